// istio-xds runs the chart's objects through istiod's and pilot-agent's own code (istio.io/istio
// at the version go.mod pins) and writes what a gateway would receive. Driven by
// tests/istio/istiod.py; the contract is JSON on stdin and stdout:
//
//	istio-xds generate < request.json > response.json   validation + xDS for one gateway proxy
//	istio-xds encode < jobs.json                         protojson to binary proto files (for Envoy)
//
// istiod's feature flags (PILOT_FILTER_GATEWAY_CLUSTER_CONFIG, PILOT_ENABLE_ROUTE_COLLAPSE_OPTIMIZATION,
// ...) are package variables read from the environment at start-up, exactly as in istiod: the
// caller sets them in this process's environment.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"
)

func main() {
	// istio's loggers write to stdout: keep stdout for the response and send fd 1 to stderr.
	respFD, err := syscall.Dup(1)
	check(err)
	check(syscall.Dup2(2, 1))
	stdout := os.NewFile(uintptr(respFD), "response")
	if len(os.Args) < 2 {
		fail("usage: istio-xds generate|encode ...")
	}
	switch os.Args[1] {
	case "generate":
		in, err := io.ReadAll(os.Stdin)
		check(err)
		var req request
		check(json.Unmarshal(in, &req))
		resp := generate(req)
		out, err := json.Marshal(resp)
		check(err)
		_, err = stdout.Write(out)
		check(err)
	case "encode":
		in, err := io.ReadAll(os.Stdin)
		check(err)
		var jobs []encodeJob
		check(json.Unmarshal(in, &jobs))
		check(encodeAll(jobs))
	default:
		fail("unknown command " + os.Args[1])
	}
}

// request is what the Python driver sends.
type request struct {
	// Istio and Gateway API objects (YAML, several documents): the chart's render plus what the
	// cluster has (Gateway, GatewayClass, a user's VirtualService).
	Config string `json:"config"`
	// Kubernetes objects (YAML): Service default/kubernetes, its Endpoints, Secrets, Pods.
	Kube string `json:"kube"`
	// The gateway proxy istiod generates for.
	Proxy proxySpec `json:"proxy"`
	// pilot-agent's part: the Wasm module cache and the file-root: CAs. Optional.
	Agent *agentSpec `json:"agent,omitempty"`
}

type proxySpec struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	IP        string            `json:"ip"`
	Labels    map[string]string `json:"labels"`
	// Its Kubernetes service account: the identity istiod authenticates it as.
	ServiceAccount string `json:"service_account"`
}

type agentSpec struct {
	// Where pkg/wasm's cache keeps the modules it pulls.
	WasmCacheDir string `json:"wasm_cache_dir"`
	// Registries pulled over plain HTTP (the suite's local registry).
	InsecureRegistries []string `json:"insecure_registries"`
	// Working directory of the agent's SDS server (its UDS is relative to it, as in the pod).
	SDSDir string `json:"sds_dir"`
}

type response struct {
	// One entry per object of Config, in order: what istiod's validating webhook answered.
	Validation []validationResult `json:"validation"`
	// What istiod sends the proxy over ADS, by type (each resource as protojson with @type).
	XDS map[string][]json.RawMessage `json:"xds"`
	// The ECDS resources after pilot-agent's pkg/wasm conversion (remote module -> local file).
	AgentECDS []json.RawMessage `json:"agent_ecds,omitempty"`
	// The file-root: secrets as pilot-agent's SDS server serves them.
	AgentSecrets []json.RawMessage `json:"agent_secrets,omitempty"`
	// Messages istiod and the agent logged at warning level or above.
	Errors []string `json:"errors,omitempty"`
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "istio-xds:", msg)
	os.Exit(1)
}
