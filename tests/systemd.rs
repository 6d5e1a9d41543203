//! The service files: `systemd/ringops.service` sets what the daemon relies on (sd-notify,
//! the watchdog, SIGHUP reloads, the credentials it reads, the sandbox), and
//! `examples/etc/ringops.toml`, the example `/etc/ringops/ringops.toml`, is accepted by
//! ringops, names every configuration key and agrees with the unit's directories.
//! The unit also passes `systemd-analyze verify` (against the binary under test) and
//! its `security` exposure stays at the recorded level; without `systemd-analyze` (or
//! with one older than systemd 250) those two tests print a skip note, and under CI
//! they fail instead (`.ci/run` installs it).

mod common;

use common::{output, project, ringops_in};
use ringops::cli::config::FileConfig;
use std::path::Path;
use std::process::Command;

const UNIT: &str = "systemd/ringops.service";
const EXAMPLE: &str = "examples/etc/ringops.toml";

/// The highest `systemd-analyze security` exposure (in tenths, as `--threshold=` takes
/// it) the unit may have: 1.1 today. The points left are the network the daemon needs
/// (PrivateNetwork=, AF_INET/AF_INET6, AF_UNIX, IPAddressDeny=), the host's root, the
/// read-only rtc that ProtectClock= allows and the group-readable UMask=0027.
const MAX_EXPOSURE: &str = "11";

fn read(rel: &str) -> String {
    std::fs::read_to_string(project().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `Key=value` line of the unit, in order (comments and sections skipped).
fn settings(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .collect()
}

/// The values of `key`, in order.
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    settings(unit)
        .into_iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The one value of `key`.
#[track_caller]
fn value<'a>(unit: &'a str, key: &str) -> &'a str {
    match values(unit, key).as_slice() {
        [one] => one,
        other => panic!("{key}= is set {} times in {UNIT}: {other:?}", other.len()),
    }
}

#[test]
fn the_unit_sets_what_the_daemon_relies_on() {
    let unit = read(UNIT);
    let expected = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/local/bin/ringops daemon --config /etc/ringops/ringops.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        ("KillMode", "mixed"),
        ("User", "ringops"),
        ("StateDirectory", "ringops"),
        ("ConfigurationDirectory", "ringops"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
    ];
    for (key, want) in expected {
        assert_eq!(value(&unit, key), want, "{key}= in {UNIT}");
    }
    let filters = values(&unit, "SystemCallFilter");
    assert_eq!(filters.first(), Some(&"@system-service"), "{filters:?}");
    // The credential IDs are the names `ringops daemon` looks for in
    // $CREDENTIALS_DIRECTORY when ringops.toml (or a RINGOPS_AGENT_* variable) names no
    // file.
    let credentials = values(&unit, "LoadCredential");
    let agents = [
        "agent-ca",
        "agent-crl",
        "agent-client-cert",
        "agent-client-key",
        "agent-token",
    ];
    for id in ["webhook-secret", "api-token"].into_iter().chain(agents) {
        assert!(
            credentials.iter().any(|c| c.starts_with(&format!("{id}:"))),
            "no LoadCredential={id}:... in {credentials:?}"
        );
    }
}

#[test]
fn the_example_configuration_is_accepted_and_matches_the_unit() {
    let text = read(EXAMPLE);
    let config = FileConfig::parse(Path::new(EXAMPLE), &text).unwrap_or_else(|e| panic!("{e}"));
    for (key, interval) in [
        ("poll_interval", &config.poll_interval),
        ("drift_interval", &config.drift_interval),
    ] {
        let interval = interval.as_deref().unwrap_or_else(|| panic!("{key} unset"));
        humantime::parse_duration(interval).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    let listen: std::net::SocketAddr = config.listen.as_deref().unwrap().parse().unwrap();
    assert!(
        listen.ip().is_loopback(),
        "{listen}: the example serves no token"
    );
    let unit = read(UNIT);
    let state = Path::new("/var/lib").join(value(&unit, "StateDirectory"));
    assert_eq!(config.state_dir.as_deref(), Some(state.as_path()));
    let etc = Path::new("/etc").join(value(&unit, "ConfigurationDirectory"));
    assert!(
        value(&unit, "ExecStart").ends_with(&format!("--config {}/ringops.toml", etc.display())),
        "ExecStart= does not read ringops.toml from {}",
        etc.display()
    );
    // The binary reads it too (a read-only command, with a state folder that exists).
    let state = tempfile::tempdir().unwrap();
    let example = project().join(EXAMPLE);
    let mut status = ringops_in(state.path());
    status.arg("--config").arg(&example);
    status.arg("--state").arg(state.path()).arg("status");
    output(&mut status).expect(0);
}

#[test]
fn the_example_configuration_documents_every_key() {
    // The keys ringops knows, from its own message for an unknown one.
    let err = FileConfig::parse(Path::new("probe.toml"), "no_such_key = 1\n").unwrap_err();
    let message = err.to_string();
    let known = message
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("no key list in: {message}"))
        .1;
    let keys: Vec<&str> = known.split(", ").map(|k| k.trim_matches('`')).collect();
    assert!(keys.contains(&"repo") && keys.len() >= 10, "{keys:?}");
    let text = read(EXAMPLE);
    for key in keys {
        let set = |l: &str| {
            let l = l.trim_start_matches('#');
            l.starts_with(&format!("{key} ="))
                || l == format!("[[{key}]]")
                || l.starts_with(&format!("[{key}]"))
        };
        assert!(text.lines().any(set), "{EXAMPLE} does not show `{key}`");
    }
}

/// `systemd-analyze`, or `None` when it is not installed (a skip note; under CI a
/// failure).
fn systemd_analyze() -> Option<Command> {
    common::require_tool("systemd-analyze", "systemd").then(|| Command::new("systemd-analyze"))
}

/// The unit as `ringops.service` in a temporary folder, starting the binary under test
/// (verify requires ExecStart= to name an existing executable).
fn unit_for_this_binary() -> (tempfile::TempDir, std::path::PathBuf) {
    let unit = read(UNIT).replace("/usr/local/bin/ringops", env!("CARGO_BIN_EXE_ringops"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ringops.service");
    std::fs::write(&path, unit).unwrap();
    (dir, path)
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Some(mut analyze) = systemd_analyze() else {
        return;
    };
    let (_dir, unit) = unit_for_this_binary();
    let run = output(analyze.arg("verify").arg(&unit));
    assert!(
        run.code == 0 && run.stderr.is_empty(),
        "systemd-analyze verify {UNIT} (exit {}):\n{}{}",
        run.code,
        run.stdout,
        run.stderr
    );
}

#[test]
fn the_unit_exposure_stays_low() {
    let Some(mut analyze) = systemd_analyze() else {
        return;
    };
    let (_dir, unit) = unit_for_this_binary();
    analyze.args(["security", "--offline=yes", "--no-pager"]);
    let run = output(
        analyze
            .arg(format!("--threshold={MAX_EXPOSURE}"))
            .arg(&unit),
    );
    if run.stderr.contains("--offline") || run.stderr.contains("--threshold") {
        common::skip(common::NO_OFFLINE_SECURITY);
        return;
    }
    let overall = run.stdout.lines().last().unwrap_or_default();
    assert_eq!(
        run.code, 0,
        "exposure above {MAX_EXPOSURE} tenths: {overall}\n{}",
        run.stdout
    );
}
