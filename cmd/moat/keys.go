package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatrpc/moat/security/fields"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create and rotate field encryption keysets (development, cleartext files)",
		Long: `keys manages the keysets that seal SECRET fields: one Tink AES-256-GCM keyset
per file, <dir>/<name>.json. A field's option 'key' selects a keyset by name;
fields without one use the keyset called "default". Services started with
MOAT_KEYSETS_DIR=<dir> (or rpc.WithKeysetDir) reload a file when it changes.

These files are cleartext, for development: whoever reads one reads every
field it seals. In production encrypt keysets with a KMS master key.`,
	}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "dir", envOr("MOAT_KEYSETS_DIR", ".dev/keys"), "keysets folder")

	initCmd := &cobra.Command{
		Use:   "init [name]...",
		Short: "Create keysets (default: the keyset called \"default\")",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{fields.DefaultKeyset}
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			for _, name := range args {
				if name == "" || strings.ContainsAny(name, `/\.`) {
					return fmt.Errorf("keyset name %q must be a plain word", name)
				}
				path := filepath.Join(dir, name+".json")
				if _, err := os.Stat(path); err == nil {
					return fmt.Errorf("%s exists; rotate it with 'moat keys rotate %s'", path, name)
				}
				ks, err := fields.NewKeyset()
				if err != nil {
					return err
				}
				if err := fields.WriteKeysetFile(path, ks, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created keyset %s (%s), primary key %d\n", name, path, ks.Primary())
			}
			return nil
		},
	}
	rotateCmd := &cobra.Command{
		Use:   "rotate <name>...",
		Short: "Add a new primary key; older keys keep opening what they sealed",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				path := filepath.Join(dir, name+".json")
				ks, err := fields.RotateKeysetFile(path, nil)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rotated keyset %s: primary key %d, keys %v\n",
					name, ks.Primary(), ks.KeyIDs())
			}
			return nil
		},
	}
	cmd.AddCommand(initCmd, rotateCmd)
	return cmd
}
