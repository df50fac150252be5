//! A private S3 server (SeaweedFS, via scripts/s3-server.sh) that a test may stop and restart
//! without disturbing the shared one the other tests use.

use std::path::PathBuf;
use std::process::Command;

/// A SeaweedFS instance on its own port and data folder; stopped on drop.
pub struct PrivateS3 {
    port: u16,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/s3-server.sh")
}

impl PrivateS3 {
    /// Starts (installing nothing new: scripts/test.sh installed the server) on `port`, with a
    /// fresh data folder. Other SeaweedFS ports move by `port − 9000`.
    pub fn start(port: u16) -> Self {
        let server = Self { port };
        server.stop();
        let home = std::env::var("FLOWGRAD_S3_HOME").unwrap_or_else(|_| "/var/tmp/flowgrad-s3".into());
        let _ = std::fs::remove_dir_all(format!("{home}/data-{port}"));
        server.restart();
        server
    }

    /// Its S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn run(&self, action: &str) {
        let status = Command::new("bash")
            .arg(script())
            .arg(action)
            .env("FLOWGRAD_S3_PORT", self.port.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("bash runs scripts/s3-server.sh");
        assert!(status.success(), "s3-server.sh {action} on port {} failed", self.port);
    }

    /// kill -9 the server (its data stays).
    pub fn stop(&self) {
        self.run("stop");
    }

    /// Starts it again on the same data and waits until it is healthy.
    pub fn restart(&self) {
        self.run("start");
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
