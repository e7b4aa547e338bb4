//go:build tools

// Package tools pins helm's main package, so that `go mod tidy` keeps it (and
// everything it imports) in go.mod/go.sum. ../build compiles it.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
