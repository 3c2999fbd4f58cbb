//! The world outside a sandbox, set up on the host for one test: a network
//! namespace joined to the host by a veth pair, holding
//!
//! - two "public" addresses in 203.0.113.0/24 (TEST-NET-3), standing for
//!   the internet (the tests unblock that range, the only one they unblock);
//! - a private address in 10.213.0.0/16, which EGRESS must not reach;
//! - a link-local address in 169.254.0.0/16, as cloud metadata is;
//!
//! each serving a greeting on port 8080; and on the host, a listener on
//! every address (as a database or the engine's TCP API would be). Each
//! test takes its own `slot`, so tests can run side by side; everything is
//! removed when the value drops (and leftovers of a killed run first).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

/// What each outside address answers.
pub const GREETING: &str = "hello-from-outside";
/// What the host's listener answers.
pub const HOST_GREETING: &str = "hello-from-the-host";

pub struct Outside {
    namespace: String,
    host_link: String,
    server: Child,
    _host_listener: std::thread::JoinHandle<()>,
    /// The host's port listening on every address.
    pub host_port: u16,
    /// The host's own address on the veth (a public-looking address of the
    /// host: reaching the host through it is still reaching the host).
    pub host_public: String,
    /// The "internet": reachable from EGRESS.
    pub public: String,
    /// Another address on the "internet", served by the same server.
    pub other_public: String,
    /// A private address beyond the host.
    pub private: String,
    /// A link-local address beyond the host.
    pub link_local: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Outside {
    /// Sets up slot `slot` (0 to 31).
    pub fn set_up(slot: u8) -> Self {
        assert!(slot < 32);
        let namespace = format!("pdk-escape-{slot}");
        let host_link = format!("pdkesc{slot}h");
        let peer_link = format!("pdkesc{slot}p");
        // A run that was killed leaves these behind.
        ip(&["netns", "delete", &namespace]);
        ip(&["link", "delete", &host_link]);

        let base = slot * 8;
        let host_public = format!("203.0.113.{}", base + 1);
        let public = format!("203.0.113.{}", base + 2);
        let other_public = format!("203.0.113.{}", base + 3);
        let host_private = format!("10.213.{slot}.1");
        let private = format!("10.213.{slot}.2");
        let link_local = format!("169.254.213.{}", slot + 1);

        must(&["netns", "add", &namespace]);
        must(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &peer_link,
        ]);
        must(&["link", "set", &peer_link, "netns", &namespace]);
        must(&[
            "addr",
            "add",
            &format!("{host_public}/29"),
            "dev",
            &host_link,
        ]);
        must(&[
            "addr",
            "add",
            &format!("{host_private}/30"),
            "dev",
            &host_link,
        ]);
        must(&["link", "set", &host_link, "up"]);
        must(&[
            "route",
            "add",
            &format!("{link_local}/32"),
            "dev",
            &host_link,
        ]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &namespace, "ip"];
            all.extend_from_slice(args);
            must(&all);
        };
        inside(&["addr", "add", &format!("{public}/29"), "dev", &peer_link]);
        inside(&[
            "addr",
            "add",
            &format!("{other_public}/29"),
            "dev",
            &peer_link,
        ]);
        inside(&["addr", "add", &format!("{private}/30"), "dev", &peer_link]);
        inside(&[
            "addr",
            "add",
            &format!("{link_local}/32"),
            "dev",
            &peer_link,
        ]);
        inside(&["link", "set", &peer_link, "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "dev", &peer_link]);

        let server = Command::new("ip")
            .args(["netns", "exec", &namespace, "python3", "-c"])
            .arg(format!(
                "import socketserver\n\
                 class Greet(socketserver.BaseRequestHandler):\n\
                 \x20   def handle(self): self.request.sendall(b'{GREETING}\\n')\n\
                 socketserver.ThreadingTCPServer.allow_reuse_address = True\n\
                 socketserver.ThreadingTCPServer(('0.0.0.0', 8080), Greet).serve_forever()\n"
            ))
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs");

        let listener = TcpListener::bind("0.0.0.0:0").expect("bind on every address");
        let host_port = listener.local_addr().unwrap().port();
        let host_listener = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let _ =
                    std::io::Write::write_all(&mut stream, format!("{HOST_GREETING}\n").as_bytes());
            }
        });

        let outside = Self {
            namespace,
            host_link,
            server,
            _host_listener: host_listener,
            host_port,
            host_public,
            public,
            other_public,
            private,
            link_local,
        };
        outside.wait_until_serving();
        outside
    }

    /// Waits until the namespace's server answers, from the host.
    fn wait_until_serving(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect((self.public.as_str(), 8080)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the outside server on {} never answered", self.public);
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        ip(&["netns", "delete", &self.namespace]);
        ip(&["link", "delete", &self.host_link]);
    }
}

/// A shell line that tries every `targets` entry (`ADDRESS PORT`) at once
/// with busybox's nc and prints `CONNECTED ADDRESS PORT: <reply>` for each
/// connection that got an answer (nothing for one refused, dropped or
/// unroutable). Every listener tried speaks first (a greeting, or the gRPC
/// server's HTTP/2 settings), so an answer is what proves a connection: nc's
/// exit status alone has been seen to lie under gVisor.
pub fn probe_line(targets: &[(String, u16)]) -> String {
    let mut line = String::new();
    for (address, port) in targets {
        line.push_str(&format!(
            "( reply=$(busybox nc -w 3 {address} {port} </dev/null 2>/dev/null | head -c 64 | \
             tr -d '\\000') ; [ -n \"$reply\" ] && echo \"CONNECTED {address} {port}: $reply\" ) & "
        ));
    }
    line.push_str("wait");
    line
}
