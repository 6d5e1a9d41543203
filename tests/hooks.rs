//! Worker-group `check` and `reload` hooks through the real binary: what they are
//! given, a failing check that stops its worker before anything is switched, a failing
//! reload that puts the previous files back, and a timeout.

mod common;

use common::{FLEET, Fleet};
use std::path::Path;

const WRITER_INI: &str = "invoices/archive.store/writer.ini";

/// Adds `check` and `reload` hooks (each a `sh -c` script) to the `core` group.
fn with_hooks(fleet: &Fleet, check: &str, reload: &str, timeout: &str) {
    let groups = format!("{FLEET}/groups.yaml");
    let hooks = format!(
        "features: [disk]\n  check: {{command: [sh, -c, {check:?}], timeout: {timeout}}}\n  reload: {{command: [sh, -c, {reload:?}], timeout: {timeout}}}",
    );
    fleet.repo.edit(&groups, "features: [disk]", &hooks);
    fleet.repo.commit("hooks");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn change_format(fleet: &Fleet) {
    let file = format!("{FLEET}/modules/archive.yaml");
    fleet.repo.edit(&file, "format: parquet", "format: avro");
    fleet.repo.commit("avro");
}

#[test]
fn hooks_run_around_the_switch_with_the_worker_in_their_environment() {
    let fleet = Fleet::new();
    let log = fleet.state.path().join("hooks.log");
    let log = log.display();
    let check = format!(
        "test -f \"$RINGOPS_STAGED_DIR/{WRITER_INI}\" && test ! -e \"$RINGOPS_WORKER_DIR/{WRITER_INI}.new\" && echo \"check $RINGOPS_WORKER $RINGOPS_RING $(pwd)\" >> {log}"
    );
    let reload = format!(
        "test -f \"$RINGOPS_WORKER_DIR/{WRITER_INI}\" && echo \"reload $RINGOPS_WORKER $RINGOPS_RING\" >> {log}"
    );
    with_hooks(&fleet, &check, &reload, "5s");
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let mut lines: Vec<String> = read(Path::new(&log.to_string()))
        .lines()
        .map(|l| {
            // The check's folder is a fresh one under the worker's `.ringops/`.
            let mut words: Vec<&str> = l.split(' ').collect();
            if words[0] == "check" {
                let dir = words[3];
                assert!(dir.contains("/.ringops/check-"), "{dir}");
                assert!(!Path::new(dir).exists(), "the staged copy is removed");
                words.truncate(3);
            }
            words.join(" ")
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "check core-dev-1 dev",
            "check core-dev-2 dev",
            "reload core-dev-1 dev",
            "reload core-dev-2 dev"
        ]
    );
    // Nothing changes: no reload.
    std::fs::remove_file(log.to_string()).expect("rm log");
    let again = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    again.expect(0);
    assert!(!read(Path::new(&log.to_string())).contains("reload"));
}

#[test]
fn a_failing_check_stops_its_worker_before_the_switch_with_its_output() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let before = read(&fleet.worker("core-dev-2").join(WRITER_INI));
    let check =
        "if [ \"$RINGOPS_WORKER\" = core-dev-2 ]; then echo 'line 3: bad format' >&2; exit 3; fi";
    with_hooks(&fleet, check, "true", "5s");
    change_format(&fleet);
    let run = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    let err = &run.expect(1).stderr;
    assert!(
        err.contains("worker core-dev-2")
            && err.contains("check hook")
            && err.contains("line 3: bad format"),
        "{err}"
    );
    assert_eq!(read(&fleet.worker("core-dev-2").join(WRITER_INI)), before);
    assert!(
        read(&fleet.worker("core-dev-1").join(WRITER_INI)).contains("parquet"),
        "a worker switched before the failure is restored"
    );
    let show = fleet.run(&["show", "d-000002"]);
    let out = &show.expect(0).stdout;
    assert!(
        out.contains("Failed") && out.contains("bad format"),
        "{out}"
    );
}

#[test]
fn a_failing_reload_restores_the_previous_files() {
    let fleet = Fleet::new();
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    let before = read(&fleet.worker("core-dev-1").join(WRITER_INI));
    let reload = format!(
        "if grep -q avro \"$RINGOPS_WORKER_DIR/{WRITER_INI}\"; then echo 'runtime rejected avro'; exit 1; fi"
    );
    with_hooks(&fleet, "true", &reload, "5s");
    change_format(&fleet);
    let run = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    let err = &run.expect(1).stderr;
    assert!(
        err.contains("reload hook") && err.contains("runtime rejected avro"),
        "{err}"
    );
    assert_eq!(read(&fleet.worker("core-dev-1").join(WRITER_INI)), before);
    assert!(!read(&fleet.worker("core-dev-2").join(WRITER_INI)).contains("avro"));
    let show = fleet.run(&["show", "d-000002"]);
    assert!(
        show.expect(0).stdout.contains("Restored"),
        "{}",
        show.stdout
    );
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_fails_the_worker() {
    let fleet = Fleet::new();
    with_hooks(&fleet, "sleep 30", "true", "300ms");
    let started = std::time::Instant::now();
    let run = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    let err = &run.expect(1).stderr;
    assert!(err.contains("did not finish within 300ms"), "{err}");
    // Given its 300 ms, then killed: far less than the 30 s it would sleep.
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(300), "{took:?}");
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
    assert!(!fleet.worker("core-dev-1").join(WRITER_INI).exists());
}

#[test]
fn hook_output_never_shows_a_secret_even_in_the_restore_record() {
    let fleet = Fleet::new();
    let secret = std::fs::read_to_string(common::project().join("examples/secrets/ingest-token"))
        .expect("demo secret");
    let secret = secret.trim();
    let marker = fleet.state.path().join("fail-now");
    let reload = format!(
        "cat \"$RINGOPS_WORKER_DIR/invoices/ingest/token\"; test ! -e {}",
        marker.display()
    );
    let groups = format!("{FLEET}/groups.yaml");
    let hooks = format!("features: [tls]\n  reload: {{command: [sh, -c, {reload:?}]}}");
    fleet.repo.edit(&groups, "features: [tls]", &hooks);
    fleet.repo.commit("edge reload prints its token");
    fleet.run(&["apply", "--ring", "dev", "--yes"]).expect(0);
    std::fs::write(&marker, "").expect("marker");
    let wf = format!("{FLEET}/workflows/invoices.yaml");
    fleet.repo.edit(&wf, "port: 8443", "port: 9443");
    fleet.repo.commit("new port");
    let run = fleet.run(&["apply", "--ring", "dev", "--yes"]);
    let err = &run.expect(1).stderr;
    assert!(
        err.contains("reload hook") && err.contains("(sensitive value)"),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
    let show = fleet.run(&["show", "d-000002", "--format", "json"]);
    let out = &show.expect(0).stdout;
    assert!(
        out.contains("then restored the previous active artifacts"),
        "{out}"
    );
    assert!(!out.contains(secret), "{out}");
    let db = std::fs::read(fleet.state.path().join("ringops.db")).expect("db");
    let wal = std::fs::read(fleet.state.path().join("ringops.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret reached the database"
        );
    }
    let token = fleet.worker("edge-dev-1").join("invoices/ingest/token");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token)
        .expect("token")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "files holding secrets are the owner's alone");
}

#[test]
fn max_concurrent_workers_bounds_how_many_workers_switch_at_once() {
    let fleet = Fleet::new();
    let log = fleet.state.path().join("order.log");
    let log = log.display();
    // Each core worker's check writes `start`, waits, writes `end`: with one worker at
    // a time the lines alternate.
    let check = format!("echo start >> {log}; sleep 0.2; echo end >> {log}");
    with_hooks(&fleet, &check, "true", "5s");
    let config = fleet.state.path().join("ringops.toml");
    std::fs::write(&config, "max_concurrent_workers = 1\n").expect("config");
    let config = config.to_str().expect("UTF-8");
    fleet
        .run(&["apply", "--ring", "dev", "--yes", "--config", config])
        .expect(0);
    let order = read(Path::new(&log.to_string()));
    assert_eq!(order, "start\nend\nstart\nend\n", "checks overlapped");
}
