// sfcluster: a loopback-only Kubernetes control plane for Streamfleet's end-to-end tests.
//
// One multi-call binary:
//
//	sfcluster serve --dir STATE       supervisor: keys, certificates, token file, embedded etcd
//	                                  (in process), kube-apiserver and kube-controller-manager
//	                                  (child processes of this one), admin kubeconfig
//	sfcluster wait --dir STATE        polls /readyz until the API server answers ok
//	sfcluster stop-apiserver --dir STATE / start-apiserver --dir STATE
//	                                  stop / restart the API server of a running `serve` (tests)
//	sfcluster kube-apiserver ...      the real kube-apiserver (k8s.io/kubernetes/cmd/kube-apiserver)
//	sfcluster kube-controller-manager ...
//	sfcluster kubectl ...             kubectl of the same Kubernetes release
//
// It is a test fixture, not a production cluster: no kubelet (pods never run), no scheduler,
// etcd without fsync, everything bound to 127.0.0.1. See docs/cluster.md.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// Controllers a test needs: owned objects are collected, namespaces finish terminating,
// namespaces get their default ServiceAccount, legacy token Secrets are populated.
const controllers = "garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller"

func main() {
	// Called through a symlink named kubectl (scripts/cluster puts one in STATE/bin), or with
	// the tool's name as the first argument.
	cmd := filepath.Base(os.Args[0])
	switch cmd {
	case "kubectl", "kube-apiserver", "kube-controller-manager":
	default:
		if len(os.Args) < 2 {
			usage()
		}
		cmd = os.Args[1]
		os.Args = os.Args[1:]
	}
	switch cmd {
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kubectl":
		// As kubectl's own main: errors printed the kubectl way, exit code from the error.
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
		os.Exit(0)
	case "serve", "wait", "stop-apiserver", "start-apiserver":
		fs := flag.NewFlagSet(cmd, flag.ExitOnError)
		dir := fs.String("dir", "", "state directory")
		timeout := fs.Duration("timeout", 60*time.Second, "how long to wait")
		_ = fs.Parse(os.Args[1:])
		if *dir == "" {
			usage()
		}
		abs, err := filepath.Abs(*dir)
		if err != nil {
			fatal(err)
		}
		switch cmd {
		case "serve":
			err = serve(abs)
		case "wait":
			err = waitReady(abs, *timeout)
		case "stop-apiserver":
			err = signalAndWait(abs, syscall.SIGUSR1, *timeout, false)
		case "start-apiserver":
			err = signalAndWait(abs, syscall.SIGUSR2, *timeout, true)
		}
		if err != nil {
			fatal(err)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sfcluster serve|wait|stop-apiserver|start-apiserver --dir STATE [--timeout 60s]\n"+
		"       sfcluster kube-apiserver|kube-controller-manager|kubectl ARGS...")
	os.Exit(2)
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "sfcluster: %v\n", err)
	os.Exit(1)
}

// state is what `serve` writes into STATE for the other subcommands and for clients.
type state struct {
	Port  int    `json:"port"`
	Token string `json:"token"`
}

// freePorts returns n distinct loopback ports that were free a moment ago. They come from below
// Linux's ephemeral range (32768 and up by default), so no outgoing connection of another
// process (a test's client, the Go module proxy) can take one between this check and the bind;
// all n are held until every one is picked, so two of them are never the same port.
func freePorts(n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for attempt := 0; len(ports) < n && attempt < 1000; attempt++ {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		port := 20000 + (int(b[0])<<8|int(b[1]))%12000
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		held = append(held, l)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("no %d free loopback ports in 20000-31999", n)
	}
	return ports, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// makeCerts writes ca.crt and a serving certificate for 127.0.0.1/localhost signed by it.
func makeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "streamfleet-test-cluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "apiserver.crt"), "CERTIFICATE", leafDER); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, "apiserver.key"), "EC PRIVATE KEY", keyDER)
}

func makeServiceAccountKey(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, "sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
}

func writeKubeconfig(dir string, st state) error {
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: streamfleet-test
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: streamfleet-test
  context:
    cluster: streamfleet-test
    user: admin
    namespace: default
current-context: streamfleet-test
`, st.Port, base64.StdEncoding.EncodeToString(ca), st.Token)
	tmp := filepath.Join(dir, "kubeconfig.tmp")
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "kubeconfig"))
}

func startEtcd(dir string, clientPort, peerPort int) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Name = "streamfleet-test"
	cfg.Dir = filepath.Join(dir, "etcd")
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, "", errors.New("etcd not ready after 30s")
	}
	return e, cu.String(), nil
}

// child is one supervised process (the API server or the controller manager).
type child struct {
	name string
	args []string
	log  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	stopped bool // stopped on purpose: an exit is not an error
}

func (c *child) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(self, append([]string{c.name}, c.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The children die with the supervisor, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	c.cmd, c.done, c.stopped = cmd, done, false
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	return nil
}

// stop ends the process: SIGTERM, then SIGKILL after grace.
func (c *child) stop(grace time.Duration) {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.stopped = true
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

func serve(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "serve.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	if err := makeCerts(dir); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := makeServiceAccountKey(dir); err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	port := ports[0]
	st := state{Port: port, Token: hex.EncodeToString(tok)}
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(st.Token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	if err := writeKubeconfig(dir, st); err != nil {
		return err
	}
	raw, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, "state.json"), raw, 0o600); err != nil {
		return err
	}

	etcd, etcdURL, err := startEtcd(dir, ports[1], ports[2])
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()

	api := &child{name: "kube-apiserver", log: filepath.Join(dir, "kube-apiserver.log"), args: []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file=" + filepath.Join(dir, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "apiserver.key"),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		// Like a typical production cluster: setting an ownerReference with
		// blockOwnerDeletion needs permission on the owner's finalizers.
		"--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
		"--profiling=false",
		// The "kubernetes" Service cannot have a loopback endpoint; nothing here needs it.
		"--endpoint-reconciler-type=none",
	}}
	kcm := &child{name: "kube-controller-manager", log: filepath.Join(dir, "kube-controller-manager.log"), args: []string{
		"--kubeconfig=" + filepath.Join(dir, "kubeconfig"),
		"--controllers=" + controllers,
		"--leader-elect=false",
		"--secure-port=0",
		"--service-account-private-key-file=" + filepath.Join(dir, "sa.key"),
		"--root-ca-file=" + filepath.Join(dir, "ca.crt"),
		"--concurrent-gc-syncs=5",
		"--profiling=false",
	}}
	if err := api.start(); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if err := waitReady(dir, 120*time.Second); err != nil {
		api.stop(5 * time.Second)
		return err
	}
	if err := kcm.start(); err != nil {
		api.stop(5 * time.Second)
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	fmt.Printf("sfcluster: ready on https://127.0.0.1:%d (kubeconfig %s)\n", port, filepath.Join(dir, "kubeconfig"))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	shutdown := func() {
		kcm.stop(5 * time.Second)
		api.stop(10 * time.Second)
	}
	for {
		api.mu.Lock()
		apiDone, apiStopped := api.done, api.stopped
		api.mu.Unlock()
		kcm.mu.Lock()
		kcmDone := kcm.done
		kcm.mu.Unlock()
		if apiStopped {
			apiDone = nil // already gone on purpose
		}
		select {
		case s := <-sigs:
			switch s {
			case syscall.SIGUSR1:
				fmt.Println("sfcluster: stopping kube-apiserver on request")
				api.stop(10 * time.Second)
				_ = os.WriteFile(filepath.Join(dir, "apiserver.stopped"), nil, 0o644)
			case syscall.SIGUSR2:
				if !apiStopped {
					continue
				}
				fmt.Println("sfcluster: starting kube-apiserver on request")
				_ = os.Remove(filepath.Join(dir, "apiserver.stopped"))
				if err := api.start(); err != nil {
					shutdown()
					return fmt.Errorf("restarting kube-apiserver: %w", err)
				}
			default:
				fmt.Println("sfcluster: shutting down")
				shutdown()
				return nil
			}
		case <-apiDone:
			shutdown()
			return fmt.Errorf("kube-apiserver exited unexpectedly; see %s", api.log)
		case <-kcmDone:
			// It gives up when the API server is away for long: start it again.
			time.Sleep(time.Second)
			if err := kcm.start(); err != nil {
				shutdown()
				return fmt.Errorf("restarting kube-controller-manager: %w", err)
			}
		}
	}
}

func readState(dir string) (state, error) {
	var st state
	raw, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(raw, &st)
}

func supervisorAlive(dir string) (int, bool) {
	raw, err := os.ReadFile(filepath.Join(dir, "serve.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

func readyzOK(dir string, st state) bool {
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	req, err := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/readyz", st.Port), nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+st.Token)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady polls /readyz (with the admin token) until it answers 200.
func waitReady(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if st, err := readState(dir); err == nil && readyzOK(dir, st) {
			return nil
		}
		// A supervisor that has written its pid and died will never get ready; one that has
		// not written it yet is still starting.
		if pid, alive := supervisorAlive(dir); pid != 0 && !alive {
			return fmt.Errorf("the cluster in %s is not running (see %s/*.log)", dir, dir)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %s (see %s)", timeout, filepath.Join(dir, "kube-apiserver.log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func portClosed(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func signalAndWait(dir string, sig syscall.Signal, timeout time.Duration, wantUp bool) error {
	pid, alive := supervisorAlive(dir)
	if !alive {
		return fmt.Errorf("the cluster in %s is not running", dir)
	}
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return err
	}
	if wantUp {
		return waitReady(dir, timeout)
	}
	deadline := time.Now().Add(timeout)
	for {
		_, statErr := os.Stat(filepath.Join(dir, "apiserver.stopped"))
		if statErr == nil && portClosed(st.Port) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver still running after %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
