//go:build tools

// Package tools pins the Envoy Gateway module that `make tools-envoy-gateway` builds its
// envoy-gateway binary from (go.sum records every dependency's hash); nothing here is compiled.
package tools

import (
	_ "github.com/envoyproxy/gateway/cmd/envoy-gateway"
	_ "sigs.k8s.io/gateway-api/apis/v1"
)
