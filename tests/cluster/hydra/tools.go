//go:build tools

// Package tools pins Ory Hydra's main package, so that `go mod tidy` keeps it
// (and everything it imports) in go.mod/go.sum. ../build compiles it.
package tools

import (
	_ "github.com/ory/hydra/v2"
)
