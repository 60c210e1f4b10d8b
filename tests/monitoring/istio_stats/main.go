// Command istio_stats prints the stats_config of the Envoy bootstrap that Istio's own code
// (istio.io/istio/pkg/bootstrap, as pilot-agent runs it) generates for an ingress gateway with
// the default ProxyConfig, optionally with a user's proxyStatsMatcher inclusion prefixes. The
// monitoring tests run the filter in real Envoy with it, to see which of its metrics survive.
//
//	go run . -template "$(go list -m -f '{{.Dir}}' istio.io/istio)/tools/packaging/common/envoy_bootstrap.json"
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pkg/bootstrap"
	"istio.io/istio/pkg/config/mesh"
)

func main() {
	tmpl := flag.String("template", "", "Istio's bootstrap template (tools/packaging/common/envoy_bootstrap.json)")
	prefixes := flag.String("inclusion-prefixes", "", "proxyStatsMatcher.inclusionPrefixes, comma-separated")
	flag.Parse()
	if err := run(*tmpl, *prefixes); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(tmpl, prefixes string) error {
	pc := mesh.DefaultProxyConfig()
	if prefixes != "" {
		pc.ProxyStatsMatcher = &meshconfig.ProxyConfig_ProxyStatsMatcher{InclusionPrefixes: strings.Split(prefixes, ",")}
	}
	// a gateway pod's node, as pilot-agent builds it (router~<ip>~<pod>.<ns>~<ns>.svc.cluster.local)
	node, err := bootstrap.GetNodeMetaData(bootstrap.MetadataOptions{
		ID:          "router~10.0.0.1~istio-ingressgateway-0.istio-ingress~istio-ingress.svc.cluster.local",
		ProxyConfig: pc,
		InstanceIPs: []string{"10.0.0.1"},
	})
	if err != nil {
		return err
	}
	var out strings.Builder
	if err := bootstrap.New(bootstrap.Config{Node: node}).WriteTo(tmpl, &out); err != nil {
		return err
	}
	var boot map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out.String()), &boot); err != nil {
		return fmt.Errorf("the generated bootstrap is not JSON: %v", err)
	}
	_, err = os.Stdout.Write(append(boot["stats_config"], '\n'))
	return err
}
