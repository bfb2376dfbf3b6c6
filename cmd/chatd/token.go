package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/chatd/chatd/internal/auth"
)

// tokenCommand prints a token signed with the configured HS256 secret:
// chatd token -sub alice -name Alice -ttl 1h.
func tokenCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chatd token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "user id (sub claim), required")
	name := fs.String("name", "", "display name (name claim)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	rooms := fs.String("rooms", "", "comma-separated room patterns the token may join (* wildcard); empty allows every room")
	admin := fs.Bool("admin", false, "add scope chat:admin (server-side publish API)")
	secret := fs.String("jwt-secret", getenv("CHATD_JWT_SECRET"), "HS256 secret [CHATD_JWT_SECRET]")
	issuer := fs.String("jwt-issuer", getenv("CHATD_JWT_ISSUER"), "issuer (iss) [CHATD_JWT_ISSUER]")
	audience := fs.String("jwt-audience", getenv("CHATD_JWT_AUDIENCE"), "audience (aud) [CHATD_JWT_AUDIENCE]")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *sub == "" {
		fmt.Fprintln(stderr, "chatd token: -sub is required (the user id)")
		return 2
	}
	if *ttl <= 0 {
		fmt.Fprintf(stderr, "chatd token: -ttl %v is not positive: give a lifetime like 15m or 24h\n", *ttl)
		return 2
	}
	if *secret == "" {
		fmt.Fprintln(stderr, "chatd token: no secret: set CHATD_JWT_SECRET (the same as the server's) or pass -jwt-secret")
		return 2
	}
	signer, err := auth.NewSigner(auth.Config{Secret: []byte(*secret), Issuer: *issuer, Audience: *audience})
	if err != nil {
		fmt.Fprintf(stderr, "chatd token: %v\n", err)
		return 2
	}
	spec := auth.TokenSpec{Subject: *sub, Name: *name, TTL: *ttl, Admin: *admin}
	if *rooms != "" {
		spec.Rooms = splitList(*rooms)
	}
	token, err := signer.Sign(spec)
	if err != nil {
		fmt.Fprintf(stderr, "chatd token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, token)
	return 0
}
