// Package deploy holds the tests of chatd's deployment files: the compose
// file (checked with compose-go, as docker compose reads it) and the
// no-docker cluster (scripts/cluster.sh). It is a module of its own so that
// the product's go.mod does not carry compose-go.
package deploy

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"},
		cli.WithWorkingDirectory(".."), cli.WithName("chatd"), cli.WithOsEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t)
	var names []string
	for name := range p.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"certs", "chatd1", "chatd2", "chatd3", "lb", "redis"}
	if !slices.Equal(names, want) {
		t.Fatalf("services = %v, want %v", names, want)
	}
}

func TestComposeChatdNodes(t *testing.T) {
	p := loadCompose(t)
	secrets := map[string]bool{}
	ids := map[string]bool{}
	for _, name := range []string{"chatd1", "chatd2", "chatd3"} {
		svc := p.Services[name]
		env := svc.Environment
		get := func(k string) string {
			if v, ok := env[k]; ok && v != nil {
				return *v
			}
			return ""
		}
		if got := get("CHATD_REDIS_URL"); !strings.HasPrefix(got, "redis://redis:") {
			t.Errorf("%s: CHATD_REDIS_URL = %q, want the redis service", name, got)
		}
		if len(get("CHATD_JWT_SECRET")) < 32 {
			t.Errorf("%s: CHATD_JWT_SECRET missing or shorter than 32 bytes (from deploy/chatd.env)", name)
		}
		secrets[get("CHATD_JWT_SECRET")] = true
		ids[get("CHATD_NODE_ID")] = true
		if get("CHATD_TRUSTED_PROXIES") == "" {
			t.Errorf("%s: no CHATD_TRUSTED_PROXIES: client IPs behind the balancer would all be the balancer's", name)
		}
		if dep, ok := svc.DependsOn["redis"]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: must depend on redis being healthy, got %+v", name, svc.DependsOn)
		}
		if svc.Build == nil {
			t.Errorf("%s: not built from the Dockerfile", name)
		}
		if nofile(svc) < 65536 {
			t.Errorf("%s: open-file limit %d: a node needs one file per connection (ulimits: nofile)", name, nofile(svc))
		}
		if svc.StopGracePeriod == nil {
			t.Errorf("%s: no stop_grace_period: docker's default 10 s may cut the drain short", name)
		}
	}
	if len(secrets) != 1 {
		t.Errorf("nodes do not share one secret: %d different", len(secrets))
	}
	if len(ids) != 3 {
		t.Errorf("node ids not distinct: %v", ids)
	}
}

func TestComposeRedisHealthcheck(t *testing.T) {
	p := loadCompose(t)
	hc := p.Services["redis"].HealthCheck
	if hc == nil || len(hc.Test) == 0 || !slices.Contains(hc.Test, "redis-cli") {
		t.Fatalf("redis healthcheck = %+v, want redis-cli ping", hc)
	}
}

func TestComposeBalancer(t *testing.T) {
	p := loadCompose(t)
	lb := p.Services["lb"]
	var published []string
	for _, port := range lb.Ports {
		published = append(published, port.Published+"->"+itoa(port.Target))
	}
	slices.Sort(published)
	if !slices.Equal(published, []string{"8080->8080", "8443->8443"}) {
		t.Errorf("lb ports = %v, want 8080 and 8443", published)
	}
	for _, node := range []string{"chatd1", "chatd2", "chatd3"} {
		if dep, ok := lb.DependsOn[node]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("lb must wait for %s to be healthy", node)
		}
	}
	if nofile(lb) < 2*65536 {
		t.Errorf("lb: open-file limit %d: HAProxy needs two files per proxied connection (ulimits: nofile)", nofile(lb))
	}
	mounted := false
	for _, v := range lb.Volumes {
		if strings.HasSuffix(v.Source, "deploy/haproxy.cfg") {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("lb does not mount deploy/haproxy.cfg")
	}
	for _, k := range []string{"CHATD1_ADDR", "CHATD2_ADDR", "CHATD3_ADDR", "LB_CERT"} {
		if v, ok := lb.Environment[k]; !ok || v == nil || *v == "" {
			t.Errorf("lb: %s not set (deploy/haproxy.cfg reads it)", k)
		}
	}
}

// nofile is a service's open-file limit (soft, or the single value).
func nofile(svc types.ServiceConfig) int {
	u := svc.Ulimits["nofile"]
	if u == nil {
		return 0
	}
	if u.Single > 0 {
		return u.Single
	}
	return u.Soft
}

func itoa(n uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
