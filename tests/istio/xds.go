package main

// istiod's config generation for one gateway proxy, with the harness Istio's own tests use
// (pilot/test/xds NewFakeDiscoveryServer: the real DiscoveryServer, config store, Kubernetes and
// ServiceEntry registries, Gateway API controller and xDS generators, over an in-memory gRPC
// connection). The proxy then asks over ADS as Envoy would: LDS and CDS, then the RDS, ECDS, EDS
// and SDS names those name. What it gets back is what istiod would send that gateway.

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pilot/pkg/model"
	v3 "istio.io/istio/pilot/pkg/xds/v3"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/constants"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/resource"
	"istio.io/istio/pkg/security"
)

type gatewayIdentity struct{ spiffe string }

func (g gatewayIdentity) AuthenticatorType() string { return "test-gateway-identity" }

func (g gatewayIdentity) Authenticate(security.AuthContext) (*security.Caller, error) {
	return &security.Caller{AuthSource: security.AuthSourceClientCertificate, Identities: []string{g.spiffe}}, nil
}

// protojson with Envoy's field names, so the output reads like Envoy's docs and config dumps.
var toJSON = protojson.MarshalOptions{UseProtoNames: true}

// resourceJSON is one xDS resource, unpacked from its Any, as JSON for the Python side.
func resourceJSON(t *failer, r *anypb.Any) json.RawMessage {
	msg, err := r.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	js, err := toJSON.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// The order Envoy asks in; each later type's names come from the earlier types' resources.
var xdsKinds = []struct{ key, typeURL string }{
	{"listeners", v3.ListenerType},
	{"clusters", v3.ClusterType},
	{"routes", v3.RouteType},
	{"extensions", v3.ExtensionConfigurationType},
	{"endpoints", v3.EndpointType},
	{"secrets", v3.SecretType},
}

// generateXDS returns what istiod sent by kind, its ECDS resources as sent (for the agent's Wasm
// conversion) and the SDS names the generated config asks the agent for (collectNames' "agent").
func generateXDS(t *failer, req request) (map[string][]json.RawMessage, []*anypb.Any, []string) {
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		Configs:                storedConfigs(t, req.Config),
		KubernetesObjectString: req.Kube,
		// The gateway reads its credentialName Secrets through istiod; the fake has no
		// SubjectAccessReview, so allow it (production: the gateway's own namespace, or RBAC).
		DisableSecretAuthorization: true,
	})
	p := req.Proxy
	// The identity istiod would read from the gateway's mTLS client certificate on its secure
	// xDS port: without one, istiod sends no credentialName Secrets (SDS). The in-memory
	// connection has no TLS, so istiod is told to authenticate plaintext too (as its tests do).
	security.AuthPlaintext = true
	s.Discovery.Authenticators = []security.Authenticator{gatewayIdentity{
		fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", p.Namespace, p.ServiceAccount)}}
	ads := s.ConnectADS().WithTimeout(10 * time.Second).
		WithID(fmt.Sprintf("router~%s~%s.%s~%s.svc.cluster.local", p.IP, p.Name, p.Namespace, p.Namespace)).
		WithMetadata(model.NodeMetadata{
			ClusterID:   constants.DefaultClusterName,
			Namespace:   p.Namespace,
			Labels:      p.Labels,
			InstanceIPs: []string{p.IP},
		})
	out := map[string][]json.RawMessage{}
	names := map[string][]string{}
	var ecds []*anypb.Any
	for _, k := range xdsKinds {
		wildcard := k.typeURL == v3.ListenerType || k.typeURL == v3.ClusterType
		if !wildcard && len(names[k.typeURL]) == 0 {
			continue
		}
		resp := ads.RequestResponseAck(t, &discovery.DiscoveryRequest{TypeUrl: k.typeURL, ResourceNames: names[k.typeURL]})
		for _, r := range resp.Resources {
			js := resourceJSON(t, r)
			out[k.key] = append(out[k.key], js)
			var tree any
			_ = json.Unmarshal(js, &tree)
			collectNames(tree, names)
			if k.typeURL == v3.ExtensionConfigurationType {
				ecds = append(ecds, r)
			}
		}
	}
	return out, ecds, names["agent"]
}

// storedConfigs are the objects as istiod's config store holds them: converted as its CRD client
// converts them (metadata.creationTimestamp included), not validated (that is the webhook's job,
// validate.go; FakeOptions.ConfigString would validate and stop at the first invalid object,
// where istiod would go on and drop what it cannot use, as it does for an EnvoyFilter patch it
// cannot decode).
func storedConfigs(t *failer, configYAML string) []config.Config {
	var out []config.Config
	now := time.Now()
	for _, doc := range splitYAML(configYAML) {
		var obj crd.IstioKind
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		gvk := obj.GroupVersionKind()
		sch, ok := collections.PilotGatewayAPI().FindByGroupVersionAliasesKind(resource.FromKubernetesGVK(&gvk))
		if !ok {
			t.Fatalf("istiod has no schema for %v", gvk)
		}
		cfg, err := crd.ConvertObject(sch, &obj, "cluster.local")
		if err != nil {
			t.Fatalf("%s %s: %v", obj.Kind, obj.Name, err)
		}
		// metadata.creationTimestamp as the API server set it (istiod orders VirtualServices,
		// Gateways, EnvoyFilters, ... by it, then by name); an object without one was created now
		if cfg.CreationTimestamp.IsZero() {
			cfg.CreationTimestamp = now
		}
		if cfg.ResourceVersion == "" {
			cfg.ResourceVersion = "1" // what the API server gives a new object (istiod passes it on, e.g. to the Wasm VM)
		}
		out = append(out, *cfg)
	}
	return out
}

// collectNames finds the resources one xDS resource refers to by name over ADS: an HCM's RDS
// route table, an HTTP filter's ECDS config, an EDS cluster's load assignment, a transport
// socket's SDS secret. The agent's file-mounted SDS names (file-root:, file-cert:, over the
// sds-grpc cluster) are collected apart under "agent"; its workload certificate names
// (default, ROOTCA: mesh mTLS) need istiod's CA and are not asked for.
func collectNames(node any, names map[string][]string) {
	add := func(typeURL, name string) {
		for _, n := range names[typeURL] {
			if n == name {
				return
			}
		}
		names[typeURL] = append(names[typeURL], name)
		sort.Strings(names[typeURL])
	}
	switch n := node.(type) {
	case map[string]any:
		if rds, ok := n["rds"].(map[string]any); ok {
			add(v3.RouteType, rds["route_config_name"].(string))
		}
		if _, ok := n["config_discovery"]; ok {
			add(v3.ExtensionConfigurationType, n["name"].(string))
		}
		if n["type"] == "EDS" {
			name, _ := n["name"].(string)
			if eds, ok := n["eds_cluster_config"].(map[string]any); ok && eds["service_name"] != nil {
				name = eds["service_name"].(string)
			}
			add(v3.EndpointType, name)
		}
		if sds, ok := n["sds_config"].(map[string]any); ok {
			name, _ := n["name"].(string)
			if _, viaADS := sds["ads"]; viaADS {
				add(v3.SecretType, name)
			} else if strings.HasPrefix(name, "file-") {
				add("agent", name)
			}
		}
		for _, v := range n {
			collectNames(v, names)
		}
	case []any:
		for _, v := range n {
			collectNames(v, names)
		}
	}
}
