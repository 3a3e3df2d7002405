//! A private `redis-server` for one test: free loopback port, no persistence, killed on drop.

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
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let bin = crate::require_tool("redis-server");
        // Retry on a new port if another process grabbed ours between probe and bind.
        for attempt in 0..5 {
            if attempt > 0 {
                self.port = crate::free_port();
            }
            let child = Command::new(&bin)
                .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .args(["--maxmemory-policy", "noeviction"])
                .args(&self.extra_args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn redis-server: {e}"));
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
        let bin = crate::require_tool("redis-server");
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let child = Command::new(&bin)
                .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .args(["--maxmemory-policy", "noeviction"])
                .args(&self.extra_args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn redis-server: {e}"));
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
