// Package lab runs the local multi-zone lab of `make demo`: a management
// API server and two zone clusters, broker.example and stockmarket.example
// (seed tutorial 003), each with a real spire-server, spire-controller-manager
// and spire-agent running as local processes; the operator federating them;
// and the tutorial's workloads: a quotes service in stockmarket.example that
// accepts only spiffe://broker.example/webapp, and a broker web app that
// fetches quotes from it every second over mTLS.
package lab

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/operator"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// Options of a lab run.
type Options struct {
	// Addr of the broker web app; 127.0.0.1:8080 if empty.
	Addr string
	// Out receives the progress and the instructions.
	Out io.Writer
	// KubeconfigDir receives the clusters' kubeconfigs; not written if empty.
	KubeconfigDir string
	// Check ends the run as soon as the web app has fetched quotes over
	// mTLS, instead of running until ctx ends.
	Check bool
	// RefreshHint the bundle endpoints advertise; SPIRE's default if zero.
	RefreshHint time.Duration
}

// zones of the lab: ZoneTrustDomain name, trust domain.
var zones = []struct{ name, trustDomain string }{
	{"broker", "broker.example"},
	{"stockmarket", "stockmarket.example"},
}

// Lab is a running lab: clusters, SPIRE per zone, the operator.
type Lab struct {
	Env     *testenv.Env
	Servers map[string]*testenv.SpireServer
	Agents  map[string]*testenv.SpireAgent
	// Vars fill in config/samples/lab.
	Vars map[string]string

	stopOperator func() error
}

// Start starts the clusters, SPIRE in every zone and the operator. Stop
// stops them all.
func Start(ctx context.Context, opts Options, step func(string, ...any)) (_ *Lab, err error) {
	step("starting a management API server and the zone clusters broker and stockmarket")
	specs := make([]testenv.ZoneSpec, 0, len(zones))
	for _, zone := range zones {
		specs = append(specs, testenv.ZoneSpec{Name: zone.name})
	}
	env, err := testenv.Start(ctx, testenv.Options{Zones: specs})
	if err != nil {
		return nil, err
	}
	lab := &Lab{Env: env, Servers: map[string]*testenv.SpireServer{}, Agents: map[string]*testenv.SpireAgent{},
		Vars: map[string]string{"WORKLOAD_UID": strconv.Itoa(os.Getuid())}}
	defer func() {
		if err != nil {
			err = errors.Join(err, lab.Stop())
		}
	}()
	for _, zone := range zones {
		step("zone %s: starting spire-server (%s), spire-controller-manager and spire-agent", zone.name, zone.trustDomain)
		if err := lab.StartZone(ctx, zone.name, zone.trustDomain, env.Zones[zone.name], "spire-server", opts.RefreshHint); err != nil {
			return nil, err
		}
	}
	if opts.KubeconfigDir != "" {
		if err := writeKubeconfigs(env, opts.KubeconfigDir); err != nil {
			return nil, err
		}
	}

	step("starting the operator")
	operatorCtx, cancel := context.WithCancel(ctx)
	operatorDone := make(chan error, 1)
	go func() {
		operatorDone <- operator.Run(operatorCtx, env.Management.Config, operator.Options{
			Namespace: testenv.OperatorNamespace, MetricsAddr: "0", ProbeAddr: "0",
			ZoneProbeInterval: 2 * time.Second, ZoneResyncInterval: 10 * time.Second, MeshResyncInterval: 10 * time.Second,
			MinFetchInterval: 5 * time.Second, SpireRefresh: time.Second,
		})
	}()
	lab.stopOperator = func() error {
		cancel()
		if err := <-operatorDone; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	return lab, nil
}

// StartZone starts a SPIRE server, controller manager and agent for a zone
// in a cluster, with its bundle ConfigMap in namespace and the className
// <namespace>-spire, as the chart would name them.
func (l *Lab) StartZone(ctx context.Context, name, trustDomain string, cluster *testenv.Cluster, namespace string, refreshHint time.Duration) error {
	server, err := l.Env.StartSpireServer(ctx, testenv.SpireServerOptions{
		Name: name, TrustDomain: trustDomain, Cluster: cluster, Namespace: namespace, ConfigMap: "spire-bundle", RefreshHint: refreshHint,
	})
	if err != nil {
		return err
	}
	if _, err := l.Env.StartSpireControllerManager(cluster, server, name, namespace+"-spire"); err != nil {
		return err
	}
	if l.Agents[name], err = l.Env.StartSpireAgent(ctx, server, "lab"); err != nil {
		return err
	}
	l.Servers[name] = server
	upper := strings.ToUpper(name)
	l.Vars[upper+"_SPIRE_SOCKET"] = server.SocketPath
	l.Vars[upper+"_BUNDLE_ENDPOINT"] = server.BundleEndpointURL
	return nil
}

// Stop stops the operator (its watches must end before the API servers),
// then everything else.
func (l *Lab) Stop() error {
	var err error
	if l.stopOperator != nil {
		err = l.stopOperator()
	}
	return errors.Join(err, l.Env.Stop())
}

// Run runs the lab until ctx ends (or, with Check, until quotes flow), and
// stops everything it started.
func Run(ctx context.Context, opts Options) (err error) {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	step := func(format string, args ...any) { fmt.Fprintf(out, "lab: "+format+"\n", args...) }
	lab, err := Start(ctx, opts, step)
	if err != nil {
		return err
	}
	defer func() {
		step("stopping everything")
		err = errors.Join(err, lab.Stop())
	}()
	agents := lab.Agents

	step("applying config/samples/lab: the two ZoneTrustDomains and the FederationMesh stock-trading")
	if err := ApplySamples(ctx, lab.Env.Management.Client, lab.Vars); err != nil {
		return err
	}
	if err := WaitForMesh(ctx, lab.Env.Management.Client, step); err != nil {
		return err
	}

	broker, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+agents["broker"].SocketPath)))
	if err != nil {
		return fmt.Errorf("the web app's identity: %w", err)
	}
	defer broker.Close()
	stockmarket, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+agents["stockmarket"].SocketPath)))
	if err != nil {
		return fmt.Errorf("the quotes service's identity: %w", err)
	}
	defer stockmarket.Close()

	quotesURL, stopQuotes, err := serveQuotes(stockmarket)
	if err != nil {
		return err
	}
	defer stopQuotes()
	app := &webApp{source: broker, quotesURL: quotesURL}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("the web app cannot listen on %s: %w", addr, err)
	}
	webServer := &http.Server{Handler: app, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = webServer.Serve(listener) }()
	defer webServer.Close()
	go app.fetchEverySecond(ctx)

	if opts.Check {
		return app.waitForQuotes(ctx, 60*time.Second)
	}
	kubectl, err := testenv.Tool("kubectl")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, `
The lab is up. Open http://%s/quotes: the broker web app (spiffe://broker.example/webapp)
fetches quotes every second over mTLS from the quotes service (spiffe://stockmarket.example/quotes),
each side trusting the other through the bundle the operator federated. No bundle was copied by hand.

SPIRE runs here as local processes (server, controller manager, agent per zone), not as Pods,
so the zones use spire.install: External and the operator reaches each server's admin socket.

Try (kubectl is built into bin/ with the other tools):
  alias kubectl=%[3]s
  export KUBECONFIG=%[2]s/management.kubeconfig
  kubectl get zonetrustdomains,federationmeshes -o wide
  kubectl get federationmesh stock-trading -o jsonpath='{.status.pairs}'
  KUBECONFIG=%[2]s/broker.kubeconfig kubectl get clusterfederatedtrustdomains,clusterstaticentries

Ctrl-C (or make demo-down from another shell) stops everything.
`, listener.Addr(), opts.KubeconfigDir, kubectl)
	<-ctx.Done()
	return nil
}

// writeKubeconfigs writes an administrator's kubeconfig for every cluster.
func writeKubeconfigs(env *testenv.Env, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	clusters := map[string]*testenv.Cluster{"management": env.Management}
	for name, cluster := range env.Zones {
		clusters[name] = cluster
	}
	for name, cluster := range clusters {
		kubeconfig, err := cluster.Kubeconfig("lab-admin", "system:masters")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".kubeconfig"), kubeconfig, 0o600); err != nil {
			return fmt.Errorf("writing kubeconfig of %s: %w", name, err)
		}
	}
	return nil
}

// ApplySamples applies config/samples/lab with the lab's values filled in.
func ApplySamples(ctx context.Context, c client.Client, vars map[string]string) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	for _, file := range []string{"zonetrustdomain_broker.yaml", "zonetrustdomain_stockmarket.yaml", "federationmesh.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "config", "samples", "lab", file))
		if err != nil {
			return err
		}
		expanded := os.Expand(string(data), func(name string) string { return vars[name] })
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(expanded), &obj.Object); err != nil {
			return fmt.Errorf("reading %s: %w", file, err)
		}
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("applying %s: %w", file, err)
		}
	}
	return nil
}

// WaitForMesh waits until the mesh is Ready and Converged, printing each
// change of its Ready condition.
func WaitForMesh(ctx context.Context, c client.Client, step func(string, ...any)) error {
	last := ""
	deadline := time.Now().Add(3 * time.Minute)
	for {
		mesh := &spirefedv1alpha1.FederationMesh{}
		if err := c.Get(ctx, types.NamespacedName{Name: "stock-trading"}, mesh); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ReadyCondition)
		converged := meta.IsStatusConditionTrue(mesh.Status.Conditions, spirefedv1alpha1.ConvergedCondition)
		if ready != nil {
			if now := ready.Reason + ": " + ready.Message; now != last {
				step("mesh stock-trading: Ready=%s %s", ready.Status, now)
				last = now
			}
			if ready.Status == "True" && converged {
				step("mesh stock-trading: Converged: each SPIRE server holds the other's bundle")
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the mesh did not converge within 3 minutes")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// serveQuotes serves random quotes over mTLS to spiffe://broker.example/webapp
// only, on loopback, and returns the URL and a stop function.
func serveQuotes(source *workloadapi.X509Source) (string, func(), error) {
	webapp := spiffeid.RequireFromString("spiffe://broker.example/webapp")
	listener, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(source, source, tlsconfig.AuthorizeID(webapp)))
	if err != nil {
		return "", nil, fmt.Errorf("the quotes service cannot listen: %w", err)
	}
	symbols := []string{"ACME", "GLOBEX", "INITECH", "UMBRELLA"}
	server := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		quotes := map[string]string{}
		for _, symbol := range symbols {
			quotes[symbol] = fmt.Sprintf("%.2f", 50+rand.Float64()*100)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(quotes)
	})}
	go func() { _ = server.Serve(listener) }()
	return "https://" + listener.Addr().String() + "/quotes", func() { _ = server.Close() }, nil
}

// webApp is the broker: it fetches quotes every second and shows the last.
type webApp struct {
	source    *workloadapi.X509Source
	quotesURL string

	mu       sync.Mutex
	quotes   map[string]string
	lastErr  string
	fetched  int
	lastTime time.Time
}

func (a *webApp) fetchEverySecond(ctx context.Context) {
	quotesID := spiffeid.RequireFromString("spiffe://stockmarket.example/quotes")
	client := &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(a.source, a.source, tlsconfig.AuthorizeID(quotesID))},
	}
	for {
		quotes, err := fetchQuotes(ctx, client, a.quotesURL)
		a.mu.Lock()
		if err != nil {
			a.lastErr = err.Error()
		} else {
			a.quotes, a.lastErr, a.lastTime = quotes, "", time.Now()
			a.fetched++
		}
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func fetchQuotes(ctx context.Context, client *http.Client, url string) (map[string]string, error) {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	response, err := client.Do(request)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	quotes := map[string]string{}
	if err := json.NewDecoder(io.LimitReader(response.Body, 1<<16)).Decode(&quotes); err != nil {
		return nil, err
	}
	return quotes, nil
}

func (a *webApp) waitForQuotes(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		a.mu.Lock()
		fetched, lastErr := a.fetched, a.lastErr
		a.mu.Unlock()
		if fetched >= 2 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the web app fetched no quotes over mTLS within %s: %s", timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var page = template.Must(template.New("quotes").Parse(`<!doctype html>
<html><head><meta http-equiv="refresh" content="1"><title>Broker</title></head>
<body><h1>Stock quotes</h1>
<p>Fetched by spiffe://broker.example/webapp from spiffe://stockmarket.example/quotes over mTLS.</p>
{{if .Error}}<p style="color:red">Last fetch failed: {{.Error}}</p>{{end}}
<table>{{range $symbol, $price := .Quotes}}<tr><td>{{$symbol}}</td><td>{{$price}}</td></tr>{{end}}</table>
<p>{{.Fetched}} fetches; last at {{.Time}}</p></body></html>
`))

func (a *webApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/quotes" && r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	a.mu.Lock()
	data := struct {
		Quotes  map[string]string
		Error   string
		Fetched int
		Time    string
	}{a.quotes, a.lastErr, a.fetched, a.lastTime.Format(time.TimeOnly)}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := page.Execute(w, data); err != nil {
		ctrl.Log.Error(err, "Rendering the quotes page")
	}
}
