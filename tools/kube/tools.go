//go:build tools

// The real control plane of the tests (tools/kube/build.sh): kube-apiserver,
// kube-controller-manager and kubectl from k8s.io/kubernetes, etcd from its server module.
// Importing the commands pins every module they need in go.mod and go.sum.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
