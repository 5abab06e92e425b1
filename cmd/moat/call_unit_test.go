package main

import (
	"strings"
	"testing"
)

func TestSplitMethod(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in              string
		service, method string
		ok              bool
	}{
		{"AuthService.Login", "AuthService", "Login", true},
		{"moat.example.auth.v1.AuthService.Login", "moat.example.auth.v1.AuthService", "Login", true},
		{"moat.example.auth.v1.AuthService/Login", "moat.example.auth.v1.AuthService", "Login", true},
		{"/moat.example.auth.v1.AuthService/Login", "moat.example.auth.v1.AuthService", "Login", true},
		{"Login", "", "", false},
		{"AuthService.", "", "", false},
		{".Login", "", "", false},
		{"AuthService/", "", "", false},
		{"a/b.C", "", "", false},
		{"a..B", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			s, m, ok := splitMethod(tt.in)
			if s != tt.service || m != tt.method || ok != tt.ok {
				t.Fatalf("splitMethod(%q) = %q, %q, %v; want %q, %q, %v", tt.in, s, m, ok,
					tt.service, tt.method, tt.ok)
			}
		})
	}
}

func FuzzSplitMethod(f *testing.F) {
	for _, s := range []string{"AuthService.Login", "a.b.C/D", "/x/y", "...", "//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, m, ok := splitMethod(in)
		if !ok {
			return
		}
		if s == "" || m == "" || strings.ContainsAny(m, "/.") || strings.Contains(s, "/") {
			t.Fatalf("splitMethod(%q) accepted service %q method %q", in, s, m)
		}
	})
}
