package fields_test

import (
	"fmt"
	"log"
	"strings"

	authv1 "github.com/moatrpc/moat/proto/moat/example/auth/v1"
	profilev1 "github.com/moatrpc/moat/proto/moat/example/profile/v1"
	"github.com/moatrpc/moat/security/fields"
)

func ExampleSealer() {
	ks, err := fields.NewKeyset()
	if err != nil {
		log.Fatal(err)
	}
	ring, err := fields.NewKeyring(map[string]*fields.Keyset{fields.DefaultKeyset: ks})
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := fields.NewSealer(ring, fields.WithRequireSealed())
	if err != nil {
		log.Fatal(err)
	}

	req := &authv1.LoginRequest{Username: "ada", Password: "hunter2"}
	if err := sealer.Seal(req); err != nil {
		log.Fatal(err)
	}
	fmt.Println(req.GetUsername(), strings.HasPrefix(req.GetPassword(), "moat:v1:"))

	if err := sealer.Unseal(req); err != nil {
		log.Fatal(err)
	}
	fmt.Println(req.GetUsername(), req.GetPassword())
	// Output:
	// ada true
	// ada hunter2
}

func ExampleRedact() {
	p := &profilev1.Profile{UserId: "u1", Name: "Ada Lovelace", Email: "ada@example.org"}
	r := fields.Redact(p).(*profilev1.Profile)
	fmt.Println(r.GetUserId(), r.GetName(), r.GetEmail())
	fmt.Println(p.GetName())
	// Output:
	// u1 [REDACTED] [REDACTED]
	// Ada Lovelace
}

func ExampleKeyset_Rotate() {
	ks, err := fields.NewKeyset()
	if err != nil {
		log.Fatal(err)
	}
	next, err := ks.Rotate()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(next.KeyIDs()), next.Primary() != ks.Primary(), next.Enabled(ks.Primary()))
	// Output: 2 true true
}
