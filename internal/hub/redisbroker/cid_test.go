package redisbroker

import (
	"strconv"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/hub/brokertest"
	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/protocol"
)

// TestCIDRecord: a cid's key holds the original's id and ts and lives for
// the retention time; a key of the earlier form (the id alone, as a node
// of the previous version wrote it during a rolling upgrade) still answers
// a retry, with the id's milliseconds as its ts.
func TestCIDRecord(t *testing.T) {
	t.Parallel()
	srv := standalone(t)
	cfg := testConfig(t, "node-a", redistest.Prefix(t))
	cfg.Retention = hub.RetentionConfig{Size: 1, TTL: time.Hour}
	b := newBroker(t, client(t, srv.URL(), false), cfg)
	ctx := bg(t)
	orig := brokertest.Publish(t, b, "room", "ann", "first", "k")
	key := b.keys("room").cidKey("ann", "k")
	if v, err := srv.Do("GET", key); err != nil || v != orig.ID+" "+strconv.FormatInt(orig.TS, 10) {
		t.Fatalf("cid key holds %q (%v), want %q", v, err, orig.ID+" "+strconv.FormatInt(orig.TS, 10))
	}
	pttl, err := srv.Do("PTTL", key)
	if ms, _ := strconv.ParseInt(pttl, 10, 64); err != nil || ms < (time.Hour-time.Minute).Milliseconds() || ms > time.Hour.Milliseconds() {
		t.Fatalf("cid key's PTTL %q (%v), want the retention time", pttl, err)
	}
	brokertest.Publish(t, b, "room", "ann", "pushes first out", "")

	if _, err := srv.Do("SET", key, orig.ID, "PX", "60000"); err != nil {
		t.Fatal(err)
	}
	got, dup, err := b.Publish(ctx, protocol.Message{Room: "room", From: "ann", Name: "Ann", Text: "first", CID: "k"})
	if err != nil || !dup || got.ID != orig.ID || got.TS != orig.TS {
		t.Fatalf("retry with a key of the earlier form: %+v dup=%v err=%v; want %s at %d", got, dup, err, orig.ID, orig.TS)
	}
}
