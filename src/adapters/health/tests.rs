//! The parts of a health check that need no server: the probe a manifest sets, the
//! probe interval, URL rendering and its errors, how probes add up to a verdict, and
//! the reasons shown.

use super::*;

fn check(probe: Probe, min_healthy: Duration) -> HealthCheck {
    HealthCheck {
        probe,
        timeout: Duration::from_secs(1),
        min_healthy,
        healthy_deadline: Duration::from_secs(10),
    }
}

fn http(url: &str) -> HealthCheck {
    check(
        Probe::Http {
            url: url.to_owned(),
        },
        Duration::ZERO,
    )
}

fn edge_1() -> Worker {
    Worker {
        name: "edge-1".to_owned(),
        address: Some("10.0.0.11".to_owned()),
        labels: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
        group: "edge".to_owned(),
        ring: "production".to_owned(),
        dir: None,
    }
}

fn url_for(template: &str, worker: &Worker) -> Result<Option<Url>, HealthError> {
    HealthChecker::new(http(template))?.url_for(worker)
}

fn manifest(http: Option<&str>, command: Option<&[&str]>) -> Health {
    Health {
        http: http.map(str::to_owned),
        command: command.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
        timeout: None,
        min_healthy: None,
        healthy_deadline: None,
        progress_deadline: None,
    }
}

#[test]
fn the_manifest_sets_one_probe_or_none() {
    let url = "http://{{ worker.address }}/healthz";
    assert_eq!(
        Probe::from_manifest(&manifest(Some(url), None)).unwrap(),
        Some(Probe::Http {
            url: url.to_owned()
        })
    );
    assert_eq!(
        Probe::from_manifest(&manifest(None, Some(&["true"]))).unwrap(),
        Some(Probe::Command {
            argv: vec!["true".to_owned()]
        })
    );
    assert_eq!(Probe::from_manifest(&manifest(None, None)).unwrap(), None);
    let both = Probe::from_manifest(&manifest(Some(url), Some(&["true"])));
    assert!(matches!(both, Err(HealthError::BothProbes)), "{both:?}");
    let empty = Probe::from_manifest(&manifest(None, Some(&[])));
    assert!(matches!(empty, Err(HealthError::EmptyCommand)), "{empty:?}");
}

#[test]
fn a_checker_refuses_an_empty_command() {
    let check = check(Probe::Command { argv: vec![] }, Duration::ZERO);
    assert!(matches!(
        HealthChecker::new(check),
        Err(HealthError::EmptyCommand)
    ));
}

#[test]
fn the_interval_is_a_fifth_of_min_healthy_between_50ms_and_1s() {
    let interval =
        |ms| check(Probe::Command { argv: vec![] }, Duration::from_millis(ms)).interval();
    assert_eq!(interval(0), MIN_INTERVAL);
    assert_eq!(interval(100), MIN_INTERVAL);
    assert_eq!(interval(1000), Duration::from_millis(200));
    assert_eq!(interval(30_000), MAX_INTERVAL);
}

#[test]
fn the_url_is_rendered_from_the_worker() {
    let template = "http://{{ worker.address }}:9000/{{ ring.name }}/{{ worker.group }}/\
                    {{ worker.name }}?region={{ worker.labels.region }}&r={{ worker.ring }}";
    let url = url_for(template, &edge_1()).unwrap().unwrap();
    assert_eq!(
        url.as_str(),
        "http://10.0.0.11:9000/production/edge/edge-1?region=eu&r=production"
    );
}

#[test]
fn a_command_check_has_no_url() {
    let check = check(
        Probe::Command {
            argv: vec!["true".to_owned()],
        },
        Duration::ZERO,
    );
    let url = HealthChecker::new(check).unwrap().url_for(&edge_1());
    assert!(matches!(url, Ok(None)), "{url:?}");
}

#[test]
fn a_worker_without_an_address_is_named() {
    let worker = Worker {
        address: None,
        ..edge_1()
    };
    let e = url_for("http://{{ worker.address }}/healthz", &worker).unwrap_err();
    assert!(matches!(e, HealthError::NoAddress { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "health: worker edge-1 has no address for the `http` template \
         `http://{{ worker.address }}/healthz`"
    );
}

#[test]
fn an_undefined_value_names_the_worker() {
    let e = url_for("http://{{ worker.labels.zone }}/", &edge_1()).unwrap_err();
    assert!(matches!(e, HealthError::Render { .. }), "{e:?}");
    assert!(e.to_string().contains("worker edge-1"), "{e}");
}

#[test]
fn a_url_that_is_not_http_names_the_worker() {
    const NO_SCHEME: &str = "it does not start with http:// or https://";
    for (template, problem) in [
        ("ftp://{{ worker.address }}/", "the scheme is `ftp`"),
        ("{{ worker.address }}:9000/healthz", NO_SCHEME),
        ("{{ worker.group }}.local:9000/healthz", NO_SCHEME),
        ("http://:9000/healthz", "empty host"),
        ("file:///{{ worker.name }}", "the scheme is `file`"),
    ] {
        let e = url_for(template, &edge_1()).unwrap_err();
        let HealthError::NotHttp {
            worker, problem: p, ..
        } = &e
        else {
            panic!("{template}: {e:?}");
        };
        assert_eq!(worker, "edge-1");
        assert_eq!(p, problem, "{template}");
        assert!(e.to_string().contains("for worker edge-1"), "{e}");
    }
}

#[test]
fn a_template_that_does_not_compile_is_an_error() {
    let e = HealthChecker::new(http("http://{{ worker.address/")).unwrap_err();
    assert!(matches!(e, HealthError::Template { .. }), "{e:?}");
}

#[tokio::test]
async fn check_all_renders_every_url_before_probing() {
    let checker = HealthChecker::new(http("http://{{ worker.address }}/")).unwrap();
    let no_address = Worker {
        name: "edge-2".to_owned(),
        address: None,
        ..edge_1()
    };
    let e = checker
        .check_all(&[edge_1(), no_address])
        .await
        .unwrap_err();
    assert!(matches!(&e, HealthError::NoAddress { worker, .. } if worker == "edge-2"));
}

#[tokio::test]
async fn check_all_of_no_workers_is_empty() {
    let checker = HealthChecker::new(http("http://{{ worker.address }}/")).unwrap();
    assert!(checker.check_all(&[]).await.unwrap().is_empty());
}

fn timeout_failure() -> ProbeFailure {
    ProbeFailure::TimedOut {
        after: Duration::from_secs(2),
    }
}

/// Feeds probes (passed or not, each 100 ms long) to a tally; the probe count when
/// the worker became healthy.
fn feed(tally: &mut Tally, check: &HealthCheck, probes: &[bool]) -> Option<u32> {
    let t0 = Instant::now();
    probes.iter().enumerate().find_map(|(i, passed)| {
        let started = t0 + Duration::from_millis(100 * i as u64);
        let ended = started + Duration::from_millis(100);
        let result = if *passed {
            Ok(())
        } else {
            Err(timeout_failure())
        };
        tally.record(started, ended, result, check)
    })
}

#[test]
fn one_passing_probe_is_enough_without_min_healthy() {
    let check = http("http://x/");
    let mut tally = Tally::default();
    assert_eq!(feed(&mut tally, &check, &[false, false, true]), Some(3));
}

#[test]
fn a_failure_restarts_the_min_healthy_clock() {
    let check = check(Probe::Command { argv: vec![] }, Duration::from_millis(300));
    let mut tally = Tally::default();
    // Two passes (200 ms), a failure, then three passes (300 ms): healthy at probe 6.
    assert_eq!(
        feed(&mut tally, &check, &[true, true, false, true, true, true]),
        Some(6)
    );
    let mut flapping = Tally::default();
    assert_eq!(
        feed(&mut flapping, &check, &[true, true, false, true, false]),
        None
    );
    let verdict = flapping.unhealthy(&check);
    assert_eq!(verdict.flaps, 2);
    assert_eq!(verdict.failures, 2);
    assert_eq!(verdict.longest_healthy, Duration::from_millis(200));
    assert!(!verdict.passing_at_end);
}

#[test]
fn reasons_say_what_failed_and_how_often() {
    let check = check(Probe::Command { argv: vec![] }, Duration::from_millis(300));
    let mut failing = Tally::default();
    feed(&mut failing, &check, &[false, false]);
    assert_eq!(
        failing.unhealthy(&check).to_string(),
        "no answer within 2s (2 of 2 probes failed within 10s)"
    );
    let mut flapping = Tally::default();
    feed(&mut flapping, &check, &[true, true, false]);
    assert_eq!(
        flapping.unhealthy(&check).to_string(),
        "no answer within 2s (1 of 3 probes failed within 10s; it passed, then failed \
         again 1 time, healthy for at most 200ms of the 300ms needed)"
    );
    let mut late = Tally::default();
    feed(&mut late, &check, &[false, true]);
    assert_eq!(
        late.unhealthy(&check).to_string(),
        "healthy for only 100ms of the 300ms needed by the 10s deadline; \
         last failure: no answer within 2s"
    );
}

#[test]
fn probe_failures_read_well() {
    let status = |code, body: &str| ProbeFailure::Status {
        code,
        body: body.to_owned(),
    };
    assert_eq!(
        status(503, "db down").to_string(),
        "HTTP 503 Service Unavailable: db down"
    );
    assert_eq!(
        status(302, "").to_string(),
        "HTTP 302 Found (redirects are not followed)"
    );
    assert_eq!(ProbeFailure::Refused.to_string(), "connection refused");
}

#[test]
fn kept_output_is_bounded() {
    assert_eq!(probe::tail("short", 10), "short");
    assert_eq!(probe::tail("0123456789", 4), "…6789");
    assert_eq!(probe::tail("ééé", 3), "…é");
    assert_eq!(crate::report::one_line("a\n  b\tc", 10), "a b c");
    assert_eq!(crate::report::one_line("abcdef", 3), "abc…");
    assert_eq!(crate::report::one_line("ééé", 3), "é…");
}
