package auth_test

import (
	"testing"

	"github.com/chatd/chatd/internal/auth"
)

func TestMayJoin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rooms []string
		room  string
		want  bool
	}{
		{nil, "general", true},
		{nil, "", true},
		{[]string{}, "general", false},
		{[]string{"general"}, "general", true},
		{[]string{"general"}, "General", false},
		{[]string{"general"}, "general2", false},
		{[]string{"general"}, "genera", false},
		{[]string{"*"}, "anything", true},
		{[]string{"*"}, "", true},
		{[]string{"team-*"}, "team-a", true},
		{[]string{"team-*"}, "team-", true},
		{[]string{"team-*"}, "team", false},
		{[]string{"team-*"}, "xteam-a", false},
		{[]string{"*-ops"}, "eu-ops", true},
		{[]string{"*-ops"}, "eu-ops-2", false},
		{[]string{"a*b"}, "ab", true},
		{[]string{"a*b"}, "axxb", true},
		{[]string{"a*b"}, "axxbx", false},
		{[]string{"a*b*c"}, "abc", true},
		{[]string{"a*b*c"}, "a-b-b-c", true},
		{[]string{"a*b*c"}, "a-c-b", false},
		{[]string{"*a*a*"}, "banana", true},
		{[]string{"*a*a*a*a*"}, "banana", false},
		{[]string{"**"}, "x", true},
		{[]string{"a**b"}, "ab", true},
		{[]string{"*.*"}, "org.sales", true},
		{[]string{"*.*"}, "orgsales", false},
		{[]string{"?"}, "a", false}, // '?' is literal
		{[]string{"?"}, "?", true},
		{[]string{"[ab]"}, "a", false}, // no character classes
		{[]string{""}, "", true},
		{[]string{""}, "a", false},
		{[]string{"x", "y", "team-*"}, "team-9", true},
		{[]string{"x", "y"}, "z", false},
		{[]string{"a*aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"}, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{[]string{"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"}, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
	}
	for _, tt := range tests {
		c := &auth.Claims{Subject: "u", Rooms: tt.rooms}
		if got := c.MayJoin(tt.room); got != tt.want {
			t.Errorf("Rooms %q: MayJoin(%q) = %v, want %v", tt.rooms, tt.room, got, tt.want)
		}
	}
}

func TestMayJoinNilClaims(t *testing.T) {
	t.Parallel()
	var c *auth.Claims
	if c.MayJoin("general") {
		t.Fatal("nil claims may join")
	}
}

func BenchmarkMayJoin(b *testing.B) {
	c := &auth.Claims{Rooms: []string{"support-*", "team-*-eu", "general"}}
	b.ReportAllocs()
	for b.Loop() {
		c.MayJoin("team-platform-eu")
	}
}
