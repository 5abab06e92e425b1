//go:build tools

// Package tools pins the Consul agent build.
package tools

import _ "github.com/hashicorp/consul"
