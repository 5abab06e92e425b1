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
	var promote, now bool
	rotateCmd := &cobra.Command{
		Use:   "rotate <name>...",
		Short: "Rotate keysets in two steps: add a key, then make it the one that seals",
		Long: `rotate adds a new key to each keyset without making it primary: services
reloading the file (every 5 seconds) learn to open values sealed with it.
Once every service holding the keyset has reloaded, 'moat keys rotate
--promote <name>' makes the new key the one that seals. Values sealed under
older keys keep opening. Done in these two steps, a rotation fails no call;
--now does both at once, for a keyset used by a single process.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if promote && now {
				return fmt.Errorf("--promote and --now are exclusive")
			}
			for _, name := range args {
				path := filepath.Join(dir, name+".json")
				ks, err := fields.ReadKeysetFile(path, nil)
				if err != nil {
					return err
				}
				var next *fields.Keyset
				var added uint32
				switch {
				case promote:
					newest := ks.Newest()
					if newest == ks.Primary() {
						return fmt.Errorf("keyset %s has no new key to promote; run 'moat keys rotate %s' first",
							name, name)
					}
					next, err = ks.Promote(newest)
				case now:
					next, err = ks.Rotate()
				default:
					next, added, err = ks.AddKey()
				}
				if err != nil {
					return err
				}
				if err := fields.WriteKeysetFile(path, next, nil); err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if added != 0 {
					fmt.Fprintf(out, "keyset %s: added key %d (primary still %d); once services have "+
						"reloaded, run: moat keys rotate --promote %s\n", name, added, next.Primary(), name)
					continue
				}
				fmt.Fprintf(out, "keyset %s: key %d now seals; keys %v open\n", name, next.Primary(), next.KeyIDs())
			}
			return nil
		},
	}
	rotateCmd.Flags().BoolVar(&promote, "promote", false, "make the newest key the one that seals")
	rotateCmd.Flags().BoolVar(&now, "now", false, "add and promote at once (single-process keysets)")
	cmd.AddCommand(initCmd, rotateCmd)
	return cmd
}
