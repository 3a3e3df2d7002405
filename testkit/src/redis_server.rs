//! A private `redis-server` for one test: free loopback port, no persistence, killed on drop.
//! Optionally TLS-only ([`RedisServer::start_tls`]) with a throw-away CA made by `openssl`.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
    tls: bool,
}

impl RedisServer {
    /// Starts a redis-server with `--save "" --appendonly no` on a free loopback port and waits
    /// until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start) with extra `redis-server` arguments (e.g. `--maxmemory-policy`).
    pub fn start_with(args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("sf-redis-{}-{}", std::process::id(), crate::free_port()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut s = RedisServer {
            port: crate::free_port(),
            dir,
            child: None,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            tls: false,
        };
        s.spawn();
        s
    }

    /// A TLS-only redis-server (plain port disabled) whose certificate, for `IP:127.0.0.1`, is
    /// signed by a fresh CA: trust [`tls_ca_file`](Self::tls_ca_file) and connect to
    /// [`tls_url`](Self::tls_url). Clients need no certificate of their own.
    pub fn start_tls(args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("sf-redis-{}-{}", std::process::id(), crate::free_port()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        make_test_certificates(&dir);
        let mut s = RedisServer {
            port: crate::free_port(),
            dir,
            child: None,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            tls: true,
        };
        s.spawn();
        s
    }

    /// PEM of the CA that signed a [`start_tls`](Self::start_tls) server's certificate.
    pub fn tls_ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(crate::require_tool("redis-server"));
        let port = self.port.to_string();
        if self.tls {
            let file = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
            cmd.args(["--bind", "127.0.0.1", "--port", "0", "--tls-port", &port])
                .args(["--tls-cert-file", &file("server.crt"), "--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.crt"), "--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--bind", "127.0.0.1", "--port", &port]);
        }
        cmd.args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--maxmemory-policy", "noeviction"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn spawn(&mut self) {
        // Retry on a new port if another process grabbed ours between probe and bind.
        for attempt in 0..5 {
            if attempt > 0 {
                self.port = crate::free_port();
            }
            let child = self.command().spawn().unwrap_or_else(|e| panic!("spawn redis-server: {e}"));
            self.child = Some(child);
            if self.wait_ready(Duration::from_secs(5)) {
                return;
            }
            self.kill();
        }
        panic!("redis-server did not start on a loopback port");
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false; // exited: port taken or bad args
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL: the server dies with all its data (no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_same_port();
    }

    fn spawn_same_port(&mut self) {
        // Generous: on a loaded 2-core machine a start can take seconds, and the port may be
        // briefly held by a process that picked it as "free" while this server was down.
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let child = self.command().spawn().unwrap_or_else(|e| panic!("spawn redis-server: {e}"));
            self.child = Some(child);
            if self.wait_ready(Duration::from_secs(5)) {
                return;
            }
            self.kill();
            assert!(Instant::now() < until, "redis-server could not restart on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `ca.crt`, `server.crt` and `server.key` (P-256, SAN `IP:127.0.0.1`) into `dir`.
fn make_test_certificates(dir: &std::path::Path) {
    let openssl = crate::require_tool("openssl");
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap_or_else(|e| panic!("write san.ext: {e}"));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=streamfleet-test-ca", "-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
        [&["req"][..], &ec, &["-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    ];
    for args in steps {
        let out = Command::new(&openssl)
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run openssl: {e}"));
        assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}
