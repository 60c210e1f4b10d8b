package main

// pilot-agent's part of what the gateway runs, with pilot-agent's own code:
//   - ECDS: the agent intercepts istiod's Wasm extension config and rewrites the remote
//     oci:// module into a local file its cache pulled and checked against sha256
//     (pkg/wasm MaybeConvertWasmExtensionConfig, LocalFileCache).
//   - SDS: a DestinationRule's caCertificates becomes an SDS secret `file-root:<path>` that the
//     agent serves from the gateway's filesystem (security/pkg/nodeagent/sds and cache). The SDS
//     server runs in-process on its UDS and is asked over gRPC as Envoy asks it.

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"istio.io/istio/pilot/pkg/xds"
	"istio.io/istio/pkg/security"
	"istio.io/istio/pkg/util/sets"
	"istio.io/istio/pkg/wasm"
	"istio.io/istio/security/pkg/nodeagent/cache"
	"istio.io/istio/security/pkg/nodeagent/sds"
)

func convertWasm(t *failer, a *agentSpec, ecds []*anypb.Any) []json.RawMessage {
	// the agent's data directory exists before it starts (/var/lib/istio/data in the pod)
	if err := os.MkdirAll(a.WasmCacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := wasm.NewLocalFileCache(a.WasmCacheDir, wasm.Options{
		InsecureRegistries:    sets.New(a.InsecureRegistries...),
		HTTPRequestMaxRetries: 1,
	})
	defer c.Cleanup()
	if err := wasm.MaybeConvertWasmExtensionConfig(ecds, c); err != nil {
		t.Fatal("pkg/wasm: ", err)
	}
	var out []json.RawMessage
	for _, r := range ecds {
		out = append(out, resourceJSON(t, r))
	}
	return out
}

func agentSecrets(t *failer, a *agentSpec, names []string) []json.RawMessage {
	if len(names) == 0 {
		return nil
	}
	// The agent's sockets are relative to its working directory (./var/run/secrets/...).
	wd, _ := os.Getwd()
	if err := os.Chdir(a.SDSDir); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.Chdir(wd) }()
	// ServeOnlyFiles: the agent with no CA to talk to serves file-mounted certificates only.
	opts := &security.Options{ServeOnlyFiles: true}
	sm, err := cache.NewSecretManagerClient(nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	srv := sds.NewServer(opts, sm, nil)
	defer srv.Stop()
	// relative, as the agent's: a UDS path is limited to 108 bytes, a test directory is long
	socket := security.FileCredentialNameSocketPath
	conn, err := grpc.NewClient("passthrough:///sds", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(socket); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal("the agent's SDS socket never appeared: ", err)
		}
	}
	resp := xds.NewSdsTest(t, conn).WithTimeout(10*time.Second).
		RequestResponseAck(t, &discovery.DiscoveryRequest{ResourceNames: names})
	var out []json.RawMessage
	for _, r := range resp.Resources {
		out = append(out, resourceJSON(t, r))
	}
	return out
}
