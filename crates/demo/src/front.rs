//! `ferrygate demo --behind nginx`: the shipped forward-authentication
//! example run as it is. The demo's intranet and its identity service, a
//! Ferrygate in forward-auth mode on a loopback port, and a real nginx in
//! front with `deploy/examples/forward-auth/nginx.conf` included unchanged
//! but for its addresses — the file a user copies is the file that runs.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `deploy/examples/forward-auth/nginx.conf`, as shipped.
pub const NGINX_SNIPPET: &str = include_str!("../../../deploy/examples/forward-auth/nginx.conf");

/// A running nginx in front; stopped (SIGTERM, so its workers go with it)
/// and its directory removed when dropped.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Where nginx listens.
    pub listen: SocketAddr,
}

/// The shipped snippet with the demo's addresses: Ferrygate's, the site's,
/// and nginx's own `listen`.
pub fn snippet(ferrygate: SocketAddr, site: SocketAddr, listen: SocketAddr) -> String {
    NGINX_SNIPPET
        .replace("127.0.0.1:9000", &ferrygate.to_string())
        .replace("127.0.0.1:3000", &site.to_string())
        .replace("listen 8080;", &format!("listen {listen};"))
}

fn nginx_binary() -> Option<PathBuf> {
    let candidates = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx", "/usr/local/bin/nginx"];
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Nginx {
    /// Starts nginx on `listen` in front of `site`, asking `ferrygate`.
    pub fn start(ferrygate: SocketAddr, site: SocketAddr, listen: SocketAddr) -> std::io::Result<Self> {
        let bin = nginx_binary().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "nginx is not installed (Debian: apt-get install nginx); `ferrygate demo` alone needs nothing",
            )
        })?;
        let dir = std::env::temp_dir().join(format!("ferrygate-demo-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        std::fs::write(dir.join("forward-auth.conf"), snippet(ferrygate, site, listen))?;
        // The shipped file goes in the http block; this wrapper is what a
        // distribution's /etc/nginx/nginx.conf provides.
        let wrapper = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             include {d}/forward-auth.conf;\n}}\n"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, wrapper)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut nginx = Self { child, dir, listen };
        nginx.wait_listening()?;
        Ok(nginx)
    }

    fn wait_listening(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.listen, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                return Err(std::io::Error::other(format!("nginx exited ({status}):\n{}", log.trim())));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!("nginx did not listen on {} within 10 s", self.listen)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The directory holding nginx's configuration and error log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_address_of_the_shipped_file_is_replaced() {
        let ferrygate = "127.0.0.1:41001".parse().unwrap();
        let site = "127.0.0.1:41002".parse().unwrap();
        let listen = "127.0.0.1:41003".parse().unwrap();
        let s = super::snippet(ferrygate, site, listen);
        assert!(!s.contains(":9000") && !s.contains(":3000") && !s.contains("listen 8080"), "{s}");
        assert!(s.contains("server 127.0.0.1:41001;") && s.contains("server 127.0.0.1:41002;"));
        assert!(s.contains("listen 127.0.0.1:41003;"));
    }
}
