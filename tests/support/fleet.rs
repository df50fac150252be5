//! A real fleet for integration tests: worker and coordinator processes, the real RabbitMQ and
//! the real S3 server started by scripts/test.sh, each test with its own bucket and queues.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgrad_jobs::{GuidanceSpec, InputSpec, JobReport, JobSpec, JobStatus, keys};
use flowgrad_queue::{Queue, RabbitBroker, RabbitConfig, SharedBroker, Topology};
use flowgrad_storage::{Bytes, S3Config, S3Store, SharedStore};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts the S3 server")
    })
}

pub use flowgrad_testkit::amqp_url;

/// The Docker client (`FLOWGRAD_TEST_DOCKER`, else `docker` on the PATH).
pub fn docker() -> String {
    std::env::var("FLOWGRAD_TEST_DOCKER").unwrap_or_else(|_| "docker".into())
}

/// A binary of this workspace, built next to the test executable (`cargo build --bins`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile folder");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// One isolated fleet: a bucket, a queue prefix, a config file and its processes.
pub struct Fleet {
    /// Temporary folder with the config and the process logs.
    pub dir: tempfile::TempDir,
    /// The config file every process reads.
    pub config: PathBuf,
    /// Direct access to the fleet's bucket.
    pub store: SharedStore,
    /// Direct access to the fleet's queues.
    pub broker: SharedBroker,
    /// Extra environment of every process started from now on (e.g. `FLOWGRAD__BROKER__URL`
    /// through a proxy).
    pub process_env: Vec<(String, String)>,
    /// Run the processes as containers of this image (host network, read-only root, uid 10001,
    /// the config mounted) instead of the workspace's binaries.
    pub image: Option<String>,
    /// Containers started, removed when the fleet is dropped.
    containers: Vec<String>,
    /// The fleet's queues, deleted when it is dropped.
    rabbit: RabbitConfig,
    workers: Vec<Option<Child>>,
    coordinators: Vec<Option<Child>>,
    spawned: usize,
}

impl Fleet {
    /// A fresh bucket and queue prefix on the shared S3 server; no processes yet.
    pub async fn new() -> Self {
        Self::on_s3(&env("FLOWGRAD_TEST_S3_ENDPOINT")).await
    }

    /// Like [`Fleet::new`] on the S3 server at `endpoint` (same credentials).
    pub async fn on_s3(endpoint: &str) -> Self {
        Self::create(endpoint, 8).await
    }

    /// Like [`Fleet::new`] with the broker's delivery limit at `delivery_limit`.
    pub async fn with_delivery_limit(delivery_limit: u32) -> Self {
        Self::create(&env("FLOWGRAD_TEST_S3_ENDPOINT"), delivery_limit).await
    }

    async fn create(endpoint: &str, delivery_limit: u32) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let bucket = format!("fleet-{}", &id[..12]);
        let prefix = format!("test-{}", &id[..12]);
        let (endpoint, access, secret) =
            (endpoint.to_string(), env("FLOWGRAD_TEST_S3_ACCESS_KEY"), env("FLOWGRAD_TEST_S3_SECRET_KEY"));
        let amqp = amqp_url();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("flowgrad.toml");
        let toml = format!(
            r#"
[storage]
kind = "s3"
endpoint = "{endpoint}"
bucket = "{bucket}"
access_key_id = "{access}"
secret_access_key = "{secret}"
create_bucket = true

[broker]
url = "{amqp}"
[broker.topology]
prefix = "{prefix}"
delivery_limit = {delivery_limit}

[http]
listen = "127.0.0.1:0"

[log]
format = "json"
filter = "info"

[worker]
shutdown_grace_seconds = 20
retry_backoff_ms = 200

[coordinator]
status_interval_ms = 300
"#,
        );
        std::fs::write(&config, toml).expect("config written");
        let s3 = S3Config {
            endpoint: Some(endpoint),
            region: "us-east-1".into(),
            bucket,
            access_key_id: access,
            secret_access_key: secret,
            force_path_style: true,
            create_bucket: true,
        };
        let store: SharedStore = Arc::new(S3Store::connect(&s3).await.expect("S3 reachable"));
        let rabbit =
            RabbitConfig { url: amqp, topology: Topology { prefix, delivery_limit }, ..RabbitConfig::default() };
        let broker: SharedBroker = Arc::new(RabbitBroker::connect(&rabbit).await.expect("RabbitMQ reachable"));
        Self {
            dir,
            config,
            store,
            broker,
            process_env: vec![],
            image: None,
            containers: vec![],
            rabbit,
            workers: vec![],
            coordinators: vec![],
            spawned: 0,
        }
    }

    fn spawn(&mut self, binary_name: &str, id: &str) -> Child {
        self.spawned += 1;
        let log = std::fs::File::create(self.log_path(id, self.spawned)).expect("log file");
        let ids = [
            ("FLOWGRAD__WORKER__ID".to_string(), id.to_string()),
            ("FLOWGRAD__COORDINATOR__ID".to_string(), id.to_string()),
        ];
        let mut command = match &self.image {
            None => {
                let mut command = Command::new(binary(binary_name));
                command
                    .arg("--config")
                    .arg(&self.config)
                    .envs(ids.iter().chain(&self.process_env).map(|(k, v)| (k, v)));
                command
            }
            Some(image) => {
                let name = self.container_name(id);
                self.containers.push(name.clone());
                let mut command = self.container(&name);
                for (key, value) in ids.iter().chain(&self.process_env) {
                    command.arg("--env").arg(format!("{key}={value}"));
                }
                command.args([image.as_str(), binary_name, "--config", "/etc/flowgrad/flowgrad.toml"]);
                command
            }
        };
        command.stdout(Stdio::null()).stderr(log).spawn().expect("process starts")
    }

    /// `docker run` as the fleet runs its containers, named `name`, up to the image and command: host network, read-only root, uid 10001, /tmp in memory, the fleet's
    /// config at /etc/flowgrad/flowgrad.toml and its folder at /fleet.
    pub fn container(&self, name: &str) -> Command {
        let mut command = Command::new(docker());
        command
            .args([
                "run",
                "--rm",
                "--name",
                name,
                "--network",
                "host",
                "--read-only",
                "--user",
                "10001:10001",
                "--tmpfs",
                "/tmp",
            ])
            .arg("--volume")
            .arg(format!("{}:/etc/flowgrad/flowgrad.toml:ro", self.config.display()))
            .arg("--volume")
            .arg(format!("{}:/fleet:ro", self.dir.path().display()));
        command
    }

    /// A container name unique to this fleet and spawn.
    fn container_name(&self, id: &str) -> String {
        format!("{}-{id}-{}", self.rabbit.topology.prefix, self.spawned)
    }

    /// `docker stop` (SIGTERM through the container runtime, then SIGKILL after `grace`) of the
    /// container of worker `index`; returns how long it took and the `docker run` client's exit.
    pub fn docker_stop_worker(&mut self, index: usize, grace: Duration) -> (Duration, std::process::ExitStatus) {
        let mut child = self.workers[index].take().expect("worker running");
        let name = self
            .containers
            .iter()
            .rev()
            .find(|n| n.contains(&format!("-worker-{index}-")))
            .expect("worker container")
            .clone();
        let started = Instant::now();
        let stopped = Command::new(docker())
            .args(["stop", "--time", &grace.as_secs().to_string(), &name])
            .output()
            .expect("docker stop runs");
        assert!(stopped.status.success(), "docker stop {name}: {}", String::from_utf8_lossy(&stopped.stderr));
        let status = child.wait().expect("docker run exits");
        (started.elapsed(), status)
    }

    fn log_path(&self, id: &str, spawn: usize) -> PathBuf {
        self.dir.path().join(format!("{id}-{spawn}.log"))
    }

    /// Everything the processes named `id` logged so far (all their incarnations).
    pub fn logs(&self, id: &str) -> String {
        (1..=self.spawned).filter_map(|n| std::fs::read_to_string(self.log_path(id, n)).ok()).collect()
    }

    /// Scrapes `/metrics` of the latest process named `id`.
    pub async fn metrics(&self, id: &str) -> String {
        let (code, body) = self.http_get(id, "/metrics").await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Waits until the `/metrics` body of the latest process named `id` satisfies `done`; returns it.
    pub async fn wait_metrics(&self, id: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let metrics = self.metrics(id).await;
            if done(&metrics) {
                return metrics;
            }
            assert!(
                Instant::now() < deadline,
                "{id}'s metrics never reached the expected state in {timeout:?}:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the latest process named `id` serves its HTTP endpoint.
    pub async fn wait_serving(&self, id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logs(id).contains("serving /healthz") {
            assert!(Instant::now() < deadline, "{id} did not start serving in {timeout:?}:\n{}", self.logs(id));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GETs `path` from the HTTP endpoint of the latest process named `id` (address taken from
    /// its log); returns the status code and the body.
    pub async fn http_get(&self, id: &str, path: &str) -> (u16, String) {
        let logs = (1..=self.spawned)
            .rev()
            .find_map(|n| std::fs::read_to_string(self.log_path(id, n)).ok())
            .expect("process log");
        let line = logs.lines().find(|l| l.contains("serving /healthz")).expect("the process logs its HTTP address");
        let value: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
        let address = value["fields"]["address"].as_str().expect("address field").to_string();
        let mut stream = tokio::net::TcpStream::connect(&address).await.expect("HTTP endpoint reachable");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await.expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("response");
        let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("HTTP status line");
        let body = response.split_once("\r\n\r\n").map_or(String::new(), |(_, body)| body.to_string());
        (code, body)
    }

    /// Starts worker `index` (replacing a dead one).
    pub fn start_worker(&mut self, index: usize) {
        let child = self.spawn("flowgrad-worker", &format!("worker-{index}"));
        if self.workers.len() <= index {
            self.workers.resize_with(index + 1, || None);
        }
        self.workers[index] = Some(child);
    }

    /// Sends `signal` to worker `index` and returns its process.
    pub fn signal_worker(&mut self, index: usize, signal: i32) -> Child {
        let child = self.workers[index].take().expect("worker running");
        // SAFETY: kill(2) on a child process id we own.
        unsafe { libc::kill(child.id() as i32, signal) };
        child
    }

    /// Starts the coordinator (id `coordinator`).
    pub fn start_coordinator(&mut self) {
        self.start_coordinator_at(0);
    }

    /// Starts coordinator `index` (`coordinator`, then `coordinator-1`, ...).
    pub fn start_coordinator_at(&mut self, index: usize) {
        let id = Self::coordinator_id(index);
        let child = self.spawn("flowgrad-coordinator", &id);
        if self.coordinators.len() <= index {
            self.coordinators.resize_with(index + 1, || None);
        }
        self.coordinators[index] = Some(child);
    }

    /// The id of coordinator `index`.
    pub fn coordinator_id(index: usize) -> String {
        if index == 0 { "coordinator".into() } else { format!("coordinator-{index}") }
    }

    /// kill -9 the coordinator.
    pub fn kill_coordinator(&mut self) {
        self.kill_coordinator_at(0);
    }

    /// kill -9 coordinator `index`.
    pub fn kill_coordinator_at(&mut self, index: usize) {
        if let Some(mut child) = self.coordinators.get_mut(index).and_then(Option::take) {
            child.kill().expect("kill");
            child.wait().expect("reaped");
        }
    }

    /// Uploads `count` Fashion-MNIST test images as PNGs under `prefix`; returns their keys.
    pub async fn upload_images(&self, prefix: &str, count: usize) -> Vec<String> {
        let data = flowgrad_models::FashionMnist::load(
            Path::new(flowgrad_models::fashion::DEFAULT_DIR),
            flowgrad_models::Split::Test,
        )
        .expect("Fashion-MNIST installed");
        let mut keys = vec![];
        for i in 0..count {
            let values = flowgrad_models::fashion::to_padded(data.raw(i));
            let png = flowgrad_storage::image::encode_png(&values, 1, 32, 32).expect("png");
            let key = format!("{prefix}img-{i:03}.png");
            self.store.put(&key, Bytes::from(png)).await.expect("upload");
            keys.push(key);
        }
        keys
    }

    /// A job editing everything under `input` into `output` with small, fast parameters.
    pub fn job(input: &str, output: &str, steps: usize, iterations: usize) -> JobSpec {
        JobSpec {
            params: flowgrad::EditParams { steps, iterations, ..Default::default() },
            seed: 3,
            ..JobSpec::new(InputSpec::Prefix(input.into()), output, "fashion-mnist", GuidanceSpec::Class("coat".into()))
        }
    }

    /// Publishes a job message (raw bytes, to test malformed ones too).
    pub async fn submit_raw(&self, payload: Vec<u8>) {
        self.broker
            .publish(Queue::Jobs, Bytes::from(payload), &uuid::Uuid::new_v4().to_string())
            .await
            .expect("published");
    }

    /// Publishes a job.
    pub async fn submit(&self, job: &JobSpec) {
        self.submit_raw(flowgrad_jobs::to_json(job)).await;
    }

    /// The job's stored status.
    pub async fn status(&self, job: uuid::Uuid) -> Option<JobStatus> {
        let bytes = self.store.get(&keys::status(job)).await.expect("storage")?;
        Some(flowgrad_jobs::from_json("status", &bytes).expect("status parses"))
    }

    /// Waits until the job's status satisfies `done`; returns it.
    pub async fn wait_status(
        &self,
        job: uuid::Uuid,
        timeout: Duration,
        done: impl Fn(&JobStatus) -> bool,
    ) -> JobStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status(job).await
                && done(&status)
            {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "job {job}: status never reached the expected state in {timeout:?}: {:?}\nlogs in {}",
                self.status(job).await,
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `report.json` exists.
    pub async fn wait_report(&self, job: uuid::Uuid, timeout: Duration) -> JobReport {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(bytes) = self.store.get(&keys::report(job)).await.expect("storage") {
                return flowgrad_jobs::from_json("report", &bytes).expect("report parses");
            }
            assert!(
                Instant::now() < deadline,
                "job {job} did not finish in {timeout:?}; status {:?}\nlogs in {}",
                self.status(job).await,
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits for a checkpoint of `job` with at least `iteration` iterations (a task in flight:
    /// finished tasks delete theirs).
    pub async fn wait_checkpoint(&self, job: uuid::Uuid, iteration: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.checkpoint_iteration(job).await < iteration {
            assert!(
                Instant::now() < deadline,
                "no checkpoint of job {job} reached iteration {iteration} in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The most iterations any checkpoint of `job` holds now (0 without one).
    pub async fn checkpoint_iteration(&self, job: uuid::Uuid) -> usize {
        let mut most = 0;
        for key in self.store.list(&keys::checkpoints_prefix(job)).await.expect("storage") {
            if let Some(bytes) = self.store.get(&key).await.expect("storage") {
                most = most.max(flowgrad::ControlState::from_bytes(&bytes).expect("checkpoint parses").iteration);
            }
        }
        most
    }

    /// Keys under `prefix`.
    pub async fn list(&self, prefix: &str) -> Vec<String> {
        self.store.list(prefix).await.expect("storage")
    }
}

impl Drop for Fleet {
    /// Kills the fleet's processes, then deletes its queues (quorum queues hold file handles in
    /// RabbitMQ: left behind run after run, they exhaust its descriptors).
    fn drop(&mut self) {
        for child in self.workers.iter_mut().chain(self.coordinators.iter_mut()).flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // killing a `docker run` client leaves its container running
        for name in &self.containers {
            let _ = Command::new(docker()).args(["rm", "--force", name]).output();
        }
        let mut rabbit = self.rabbit.clone();
        rabbit.reconnect.max_elapsed = Some(Duration::from_secs(10));
        // Drop runs inside the test's runtime, which cannot block: tear down on a thread of its own.
        let teardown = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let delete = async { RabbitBroker::connect(&rabbit).await?.delete_topology().await };
                tokio::time::timeout(Duration::from_secs(30), delete).await
            })
        });
        match teardown.join() {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("fleet teardown: deleting the queues failed: {e}"),
            Ok(Err(_)) => eprintln!("fleet teardown: deleting the queues took over 30 s"),
            Err(_) => eprintln!("fleet teardown panicked"),
        }
    }
}
