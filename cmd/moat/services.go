package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/moatrpc/moat/registry"
)

// serviceSummary is one line of 'moat services'.
type serviceSummary struct {
	Name     string   `json:"name"`
	Passing  int      `json:"passing"`
	Warning  int      `json:"warning"`
	Critical int      `json:"critical"`
	Versions []string `json:"versions"`
	// Identities are the SPIFFE IDs the nodes registered. Registry
	// contents are claims: the TLS handshake is what proves an identity.
	Identities []string `json:"identities"`
}

// nodeDetail is one node in 'moat describe'.
type nodeDetail struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Status   string            `json:"status"`
	Version  string            `json:"version"`
	Identity string            `json:"identity,omitempty"`
	Metadata map[string]string `json:"metadata"`
}

// endpointDetail is one endpoint in 'moat describe'.
type endpointDetail struct {
	Name     string            `json:"name"`
	Stream   bool              `json:"stream"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// serviceDetail is the answer of 'moat describe'.
type serviceDetail struct {
	Name      string           `json:"name"`
	Versions  []string         `json:"versions"`
	Endpoints []endpointDetail `json:"endpoints"`
	Nodes     []nodeDetail     `json:"nodes"`
}

const metaIdentity = registry.MetaIdentity

func newServicesCmd() *cobra.Command {
	var cfg callerConfig
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List the services registered in Consul with their health and identities",
		Long: `services lists every service in the Consul catalog with the number of its
nodes whose health check is passing, warning or critical, the versions they
registered and the SPIFFE identities they claim in their metadata. Consul is
reached over HTTPS with the workload certificate given by --as.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), cfg.timeout)
			defer cancel()
			reg, err := openRegistry(&cfg)
			if err != nil {
				return err
			}
			defer reg.Close()
			list, err := listServices(ctx, reg)
			if err != nil {
				return err
			}
			if cfg.asJSON {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			return servicesTable(cmd.OutOrStdout(), list)
		},
	}
	addCallerFlags(cmd, &cfg)
	addJSONFlag(cmd, &cfg)
	return cmd
}

func newDescribeCmd() *cobra.Command {
	var (
		cfg       callerConfig
		addresses bool
	)
	cmd := &cobra.Command{
		Use:   "describe <service>",
		Short: "Show a service's endpoints, nodes, versions and metadata as registered in Consul",
		Long: `describe shows what Consul holds about a service: the endpoints and versions
its nodes registered (in go-micro's tag format, so go-micro services show
too), and each node with its address, health, version, claimed identity and
metadata. Registry contents are claims: moat's clients check a server's
identity in the TLS handshake, never from here.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), cfg.timeout)
			defer cancel()
			reg, err := openRegistry(&cfg)
			if err != nil {
				return err
			}
			defer reg.Close()
			d, err := describe(ctx, reg, args[0])
			if err != nil {
				return err
			}
			switch {
			case addresses:
				for _, n := range d.Nodes {
					if n.Status == api.HealthPassing {
						fmt.Fprintln(cmd.OutOrStdout(), n.Address)
					}
				}
				return nil
			case cfg.asJSON:
				return writeJSON(cmd.OutOrStdout(), d)
			}
			return describeText(cmd.OutOrStdout(), d)
		},
	}
	addCallerFlags(cmd, &cfg)
	addJSONFlag(cmd, &cfg)
	cmd.Flags().BoolVar(&addresses, "addresses", false,
		"print only the addresses of passing nodes, one a line (for grpcurl, ghz and scripts)")
	return cmd
}

func openRegistry(cfg *callerConfig) (*registry.Consul, error) {
	id, err := cfg.identity()
	if err != nil {
		return nil, err
	}
	return cfg.registry(id)
}

// entries returns every node of name, healthy or not.
func entries(ctx context.Context, reg *registry.Consul, name string) ([]*api.ServiceEntry, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	es, _, err := reg.API().Health().Service(name, "", false, q)
	if err != nil {
		return nil, fmt.Errorf("query Consul for %q: %w", name, err)
	}
	slices.SortFunc(es, func(a, b *api.ServiceEntry) int { return strings.Compare(a.Service.ID, b.Service.ID) })
	return es, nil
}

func listServices(ctx context.Context, reg *registry.Consul) ([]serviceSummary, error) {
	names, err := reg.ListServices(ctx)
	if err != nil {
		return nil, err
	}
	slog.Info("reading health of services", "count", len(names))
	out := make([]serviceSummary, 0, len(names))
	for _, s := range names {
		slog.Debug("querying", "service", s.Name)
		es, err := entries(ctx, reg, s.Name)
		if err != nil {
			return nil, err
		}
		sum := serviceSummary{Name: s.Name, Versions: []string{}, Identities: []string{}}
		for _, e := range es {
			switch e.Checks.AggregatedStatus() {
			case api.HealthPassing:
				sum.Passing++
			case api.HealthWarning:
				sum.Warning++
			default:
				sum.Critical++
			}
			if v := registry.DecodeTags(e.Service.Tags).Version; v != "" {
				sum.Versions = appendNew(sum.Versions, v)
			}
			if id := e.Service.Meta[metaIdentity]; id != "" {
				sum.Identities = appendNew(sum.Identities, id)
			}
		}
		slices.Sort(sum.Versions)
		slices.Sort(sum.Identities)
		out = append(out, sum)
	}
	return out, nil
}

func appendNew(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func describe(ctx context.Context, reg *registry.Consul, name string) (*serviceDetail, error) {
	es, err := entries(ctx, reg, name)
	if err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("no service %q in Consul ('moat services' lists what is registered)", name)
	}
	d := &serviceDetail{Name: name, Versions: []string{}, Endpoints: []endpointDetail{}}
	seen := map[string]bool{}
	for _, e := range es {
		tags := registry.DecodeTags(e.Service.Tags)
		meta := e.Service.Meta
		if len(meta) == 0 {
			meta = tags.Metadata
		}
		if meta == nil {
			meta = map[string]string{}
		}
		if tags.Version != "" {
			d.Versions = appendNew(d.Versions, tags.Version)
		}
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		d.Nodes = append(d.Nodes, nodeDetail{
			ID: e.Service.ID, Address: fmt.Sprintf("%s:%d", addr, e.Service.Port),
			Status: e.Checks.AggregatedStatus(), Version: tags.Version,
			Identity: meta[metaIdentity], Metadata: meta,
		})
		for _, ep := range tags.Endpoints {
			if seen[ep.Name] {
				continue
			}
			seen[ep.Name] = true
			d.Endpoints = append(d.Endpoints, endpointDetail{
				Name: ep.Name, Stream: ep.Metadata["stream"] == "true", Metadata: ep.Metadata,
			})
		}
	}
	slices.Sort(d.Versions)
	slices.SortFunc(d.Endpoints, func(a, b endpointDetail) int { return strings.Compare(a.Name, b.Name) })
	return d, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func servicesTable(w io.Writer, list []serviceSummary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPASSING\tWARNING\tCRITICAL\tVERSIONS\tIDENTITY (registered)")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.Passing, s.Warning, s.Critical,
			dash(s.Versions), dash(s.Identities))
	}
	return tw.Flush()
}

func describeText(w io.Writer, d *serviceDetail) error {
	fmt.Fprintf(w, "service:   %s\n", d.Name)
	fmt.Fprintf(w, "versions:  %s\n", dash(d.Versions))
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tSTREAM\tGRPC SERVICE")
	for _, e := range d.Endpoints {
		grpcService := e.Metadata["grpc_service"]
		if grpcService == "" {
			grpcService = "-"
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\n", e.Name, e.Stream, grpcService)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATUS\tVERSION\tIDENTITY (registered)")
	for _, n := range d.Nodes {
		id := n.Identity
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.ID, n.Address, n.Status, n.Version, id)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NODE\tMETADATA")
	for _, n := range d.Nodes {
		for i, k := range slices.Sorted(maps.Keys(n.Metadata)) {
			node := ""
			if i == 0 {
				node = n.ID
			}
			fmt.Fprintf(tw, "%s\t%s=%s\n", node, k, n.Metadata[k])
		}
	}
	return tw.Flush()
}
