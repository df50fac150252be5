//! The Helm chart's rendered `flowgrad.toml` (one per value set in helm/flowgrad/ci/) parses with
//! the services' own loader, with credentials given the way the chart gives them (Secret-backed
//! `FLOWGRAD__...` variables), and agrees with the rendered Deployments.
//!
//! scripts/validate-deploy.sh renders the chart and writes `<set>/flowgrad.toml` and
//! `<set>/facts.json` under the folder named by `FLOWGRAD_RENDERED_CONFIGS`.

use std::path::{Path, PathBuf};

use flowgrad_coordinator::settings::{CoordinatorSection, DEFAULTS as COORDINATOR_DEFAULTS};
use flowgrad_service::{FleetConfig, LogFormat, StorageConfig};
use flowgrad_worker::settings::{DEFAULTS as WORKER_DEFAULTS, WorkerSection};
use serde_json::Value;

const ACCESS_KEY: &str = "chart-access-key";
const SECRET_KEY: &str = "chart-secret-key";
const BROKER_URL: &str = "amqp://flowgrad:chart-password@rabbitmq.messaging.svc:5672/%2f";

/// What each CI value set must produce.
struct Expected {
    bucket: &'static str,
    endpoint: Option<&'static str>,
    region: &'static str,
    force_path_style: bool,
    prefix: &'static str,
    delivery_limit: u32,
    grace: u64,
    /// `[worker] recorded_forwards` (unset: each model's default).
    recorded_forwards: Option<usize>,
    log: LogFormat,
    gpu: bool,
    keda: bool,
    s3_secret: &'static str,
    broker_secret: (&'static str, &'static str),
}

fn expected(set: &str) -> Expected {
    let base = Expected {
        bucket: "",
        endpoint: Some("http://seaweedfs-s3.storage.svc:8333"),
        region: "us-east-1",
        force_path_style: true,
        prefix: "flowgrad",
        delivery_limit: 5,
        grace: 60,
        recorded_forwards: None,
        log: LogFormat::Json,
        gpu: false,
        keda: false,
        s3_secret: "flowgrad-s3",
        broker_secret: ("flowgrad-broker", "url"),
    };
    match set {
        "cpu" => Expected { bucket: "flowgrad-cpu", ..base },
        "gpu" => Expected {
            bucket: "flowgrad-gpu",
            endpoint: None,
            region: "eu-west-1",
            force_path_style: false,
            prefix: "edits",
            delivery_limit: 8,
            grace: 120,
            recorded_forwards: Some(4),
            gpu: true,
            ..base
        },
        "keda-on" => Expected { bucket: "flowgrad-keda", prefix: "fleet", gpu: true, keda: true, ..base },
        "existing-secrets" => Expected {
            bucket: "flowgrad-existing",
            endpoint: Some("http://minio.storage.svc:9000"),
            log: LogFormat::Pretty,
            s3_secret: "flowgrad-s3-credentials",
            broker_secret: ("flowgrad-rabbitmq", "amqp-url"),
            ..base
        },
        other => panic!("unexpected value set {other}: add its expectations to tests/deploy_config.rs"),
    }
}

fn rendered_sets() -> Vec<PathBuf> {
    let dir = std::env::var("FLOWGRAD_RENDERED_CONFIGS").unwrap_or_else(|_| {
        panic!("FLOWGRAD_RENDERED_CONFIGS is not set: run `bash scripts/validate-deploy.sh /var/tmp/flowgrad-rendered` and set FLOWGRAD_RENDERED_CONFIGS=/var/tmp/flowgrad-rendered (scripts/test.sh does both)")
    });
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e} (run scripts/validate-deploy.sh first)"))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.join("flowgrad.toml").is_file())
        .collect();
    sets.sort();
    assert!(sets.len() >= 4, "expected the cpu, gpu, keda-on and existing-secrets renderings in {dir}, found {sets:?}");
    sets
}

fn facts(set: &Path) -> Value {
    let text = std::fs::read_to_string(set.join("facts.json")).expect("facts.json written by validate-deploy.sh");
    serde_json::from_str(&text).expect("facts.json is JSON")
}

/// The env entry `name` of a rendered container must come from Secret `secret`, key `key`.
fn assert_secret_ref(env: &Value, name: &str, secret: &str, key: &str, set: &str) {
    let reference = &env[name]["secretKeyRef"];
    assert_eq!(reference["name"], secret, "{set}: {name} must come from Secret {secret}: {env}");
    assert_eq!(reference["key"], key, "{set}: {name} must use key {key}: {env}");
}

fn set_env(name: &str, value: &str) {
    // SAFETY: this test binary has a single test function; no other thread reads the environment.
    unsafe { std::env::set_var(name, value) };
}

#[test]
fn rendered_configs_load_with_the_services_loaders() {
    // Exactly what the chart's Secrets put into the pods' environment.
    set_env("FLOWGRAD__STORAGE__ACCESS_KEY_ID", ACCESS_KEY);
    set_env("FLOWGRAD__STORAGE__SECRET_ACCESS_KEY", SECRET_KEY);
    set_env("FLOWGRAD__BROKER__URL", BROKER_URL);
    set_env("FLOWGRAD__WORKER__ID", "flowgrad-worker-7d9f8b6c4-x2x9q");
    set_env("FLOWGRAD__COORDINATOR__ID", "flowgrad-coordinator-5c6d7b8f9-abcde");

    for set in rendered_sets() {
        let name = set.file_name().unwrap().to_string_lossy().into_owned();
        let want = expected(&name);
        let file = set.join("flowgrad.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        for secret in [ACCESS_KEY, SECRET_KEY, "password", "secret_access_key =", "access_key_id =", "url ="] {
            assert!(
                !text.contains(secret),
                "{name}: the ConfigMap's flowgrad.toml must not carry credentials ({secret:?} found)"
            );
        }

        let worker = FleetConfig::<WorkerSection>::load(Some(&file), WORKER_DEFAULTS)
            .unwrap_or_else(|e| panic!("{name}: worker config does not load: {e:#}"));
        let coordinator = FleetConfig::<CoordinatorSection>::load(Some(&file), COORDINATOR_DEFAULTS)
            .unwrap_or_else(|e| panic!("{name}: coordinator config does not load: {e:#}"));

        for (service, storage, broker) in
            [("worker", &worker.storage, &worker.broker), ("coordinator", &coordinator.storage, &coordinator.broker)]
        {
            let StorageConfig::S3 { s3 } = storage else {
                panic!("{name}/{service}: storage must be S3, got {storage:?}")
            };
            assert_eq!(s3.bucket, want.bucket, "{name}/{service}: bucket");
            assert_eq!(s3.endpoint.as_deref(), want.endpoint, "{name}/{service}: endpoint");
            assert_eq!(s3.region, want.region, "{name}/{service}: region");
            assert_eq!(s3.force_path_style, want.force_path_style, "{name}/{service}: force_path_style");
            assert_eq!(s3.access_key_id, ACCESS_KEY, "{name}/{service}: access key from the environment");
            assert_eq!(s3.secret_access_key, SECRET_KEY, "{name}/{service}: secret key from the environment");
            assert_eq!(broker.url, BROKER_URL, "{name}/{service}: broker URL from the environment");
            assert_eq!(broker.topology.prefix, want.prefix, "{name}/{service}: queue prefix");
            assert_eq!(broker.topology.delivery_limit, want.delivery_limit, "{name}/{service}: delivery limit");
        }
        assert_eq!(worker.http.listen, "0.0.0.0:9090", "{name}: probes and metrics port");
        assert_eq!(worker.log.format, want.log, "{name}: log format");
        assert_eq!(worker.storage_retry.max_elapsed, std::time::Duration::from_secs(120), "{name}: storage retry");

        let settings = &worker.service.worker;
        assert_eq!(settings.id, "flowgrad-worker-7d9f8b6c4-x2x9q", "{name}: worker id from the pod name");
        assert_eq!(settings.assets, None, "{name}: the bundled models are built into the binaries");
        assert_eq!(settings.shutdown_grace_seconds, want.grace, "{name}: shutdown grace");
        assert_eq!(settings.recorded_forwards, want.recorded_forwards, "{name}: recorded forwards");
        assert!(settings.max_attempts < want.delivery_limit, "{name}: max_attempts must stay below the delivery limit");
        assert_eq!(coordinator.service.coordinator.id, "flowgrad-coordinator-5c6d7b8f9-abcde");
        assert!(coordinator.service.coordinator.job_prefetch >= 1);
        assert_eq!(coordinator.service.coordinator.lease_seconds, 30.0, "{name}: job lease");
        assert_eq!(
            worker.service.models, coordinator.service.models,
            "{name}: workers and coordinators see the same [models]"
        );
        let models = &worker.service.models;
        if name == "gpu" {
            let ncsnpp = models.ncsnpp.as_ref().unwrap_or_else(|| panic!("{name}: [models.ncsnpp] rendered"));
            assert_eq!(
                (ncsnpp.checkpoint.to_str(), ncsnpp.weights.as_str()),
                (Some("/models/celebahq_rf.pth"), "ema"),
                "{name}"
            );
            assert_eq!(
                models.clip.as_ref().map(|c| c.checkpoint.clone()),
                Some("/models/clip-vit-b32.safetensors".into()),
                "{name}"
            );
        } else {
            assert_eq!(models, &flowgrad_engine::ModelCatalog::default(), "{name}: no optional models");
        }

        // The rendered Deployments agree with the config.
        let facts = facts(&set);
        let deployment = &facts["worker"];
        let termination = deployment["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: worker terminationGracePeriodSeconds missing"));
        assert!(
            settings.shutdown_grace_seconds < termination,
            "{name}: shutdown_grace_seconds {} must be below the pod's terminationGracePeriodSeconds {termination}",
            settings.shutdown_grace_seconds
        );
        assert_eq!(
            deployment["env"]["FLOWGRAD__WORKER__ID"]["fieldRef"]["fieldPath"], "metadata.name",
            "{name}: worker id via the downward API"
        );
        for component in ["worker", "coordinator"] {
            let env = &facts[component]["env"];
            assert_eq!(env["FLOWGRAD_CONFIG"], "/etc/flowgrad/flowgrad.toml", "{name}/{component}");
            assert_secret_ref(
                env,
                "FLOWGRAD__STORAGE__ACCESS_KEY_ID",
                &want.s3_secret_for(&name),
                want.access_key_key(),
                &name,
            );
            assert_secret_ref(
                env,
                "FLOWGRAD__STORAGE__SECRET_ACCESS_KEY",
                &want.s3_secret_for(&name),
                want.secret_key_key(),
                &name,
            );
            assert_secret_ref(env, "FLOWGRAD__BROKER__URL", want.broker_secret.0, want.broker_secret.1, &name);
            assert_eq!(facts[component]["readOnlyRootFilesystem"], true, "{name}/{component}");
            assert_eq!(facts[component]["allowPrivilegeEscalation"], false, "{name}/{component}");
            assert_eq!(facts[component]["runAsNonRoot"], true, "{name}/{component}");
            assert_eq!(facts[component]["probes"], serde_json::json!(["/healthz", "/readyz"]), "{name}/{component}");
        }
        let image = deployment["image"].as_str().unwrap();
        assert_eq!(deployment["limits"]["nvidia.com/gpu"].as_u64().is_some(), want.gpu, "{name}: GPU limit");
        assert_eq!(image.ends_with("-cuda"), want.gpu, "{name}: worker image {image}");
        if want.keda {
            assert!(deployment["replicas"].is_null(), "{name}: KEDA owns the worker replica count");
            assert_eq!(
                facts["scaledobject"]["queueName"],
                format!("{}.tasks", want.prefix),
                "{name}: KEDA watches the tasks queue"
            );
        } else {
            assert!(deployment["replicas"].as_u64().is_some(), "{name}: fixed worker replicas");
            assert!(facts["scaledobject"].is_null(), "{name}: no ScaledObject without KEDA");
        }
        let created: Vec<&str> =
            facts["secrets"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        if name == "existing-secrets" {
            assert!(created.is_empty(), "{name}: no Secrets created when existing ones are named: {created:?}");
        } else {
            assert_eq!(created, ["flowgrad-s3", "flowgrad-broker"], "{name}: created Secrets");
        }
        eprintln!(
            "{name}: flowgrad.toml loads for worker and coordinator; grace {}s < {termination}s",
            settings.shutdown_grace_seconds
        );
    }
}

impl Expected {
    fn s3_secret_for(&self, _set: &str) -> String {
        self.s3_secret.to_owned()
    }

    fn access_key_key(&self) -> &'static str {
        if self.s3_secret == "flowgrad-s3" { "access-key-id" } else { "AWS_ACCESS_KEY_ID" }
    }

    fn secret_key_key(&self) -> &'static str {
        if self.s3_secret == "flowgrad-s3" { "secret-access-key" } else { "AWS_SECRET_ACCESS_KEY" }
    }
}
