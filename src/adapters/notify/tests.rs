//! Configuration, names, what is posted, and every way a target is refused at start.

use super::*;

fn event() -> Event {
    Event {
        deployment: DeploymentId(12),
        ring: "production".to_owned(),
        commit: "0123abcdef0123abcdef0123abcdef0123abcdef".to_owned(),
        state: DeploymentState::Failed,
        actor: "alice".to_owned(),
        reason: "batch 1/3 (edge-1) unhealthy:\n  edge-1: HTTP 503 <db> & co".to_owned(),
        at: Timestamp::from_unix_seconds(1_780_000_000),
        link: None,
    }
}

fn target(kind: TargetKind, url: &str) -> TargetConfig {
    TargetConfig {
        kind,
        url: url.to_owned(),
        name: None,
        token_file: None,
        header: None,
    }
}

fn start(targets: Vec<TargetConfig>) -> Result<Notifier, NotifyError> {
    Notifier::start(NotifySettings {
        targets,
        ..NotifySettings::default()
    })
}

#[derive(Deserialize)]
struct Config {
    notify: Vec<TargetConfig>,
}

#[test]
fn targets_read_from_toml() {
    let text = r#"
        [[notify]]
        type = "webhook"
        url = "https://ops.example/hooks/ringops"
        token_file = "/etc/ringops/notify-token"
        header = "X-Ringops-Token"

        [[notify]]
        type = "slack"
        name = "team-channel"
        url = "https://hooks.slack.com/services/T0/B0/secret"
    "#;
    let config: Config = toml::from_str(text).unwrap();
    assert_eq!(config.notify[0].kind, TargetKind::Webhook);
    assert_eq!(
        config.notify[0].token_file.as_deref(),
        Some(std::path::Path::new("/etc/ringops/notify-token"))
    );
    assert_eq!(config.notify[1].kind, TargetKind::Slack);
    assert_eq!(config.notify[1].name.as_deref(), Some("team-channel"));
    let unknown = "[[notify]]\ntype = \"webhook\"\nurl = \"https://x/\"\ntoken = \"t\"\n";
    assert!(toml::from_str::<Config>(unknown).is_err());
    let kind = "[[notify]]\ntype = \"email\"\nurl = \"https://x/\"\n";
    assert!(toml::from_str::<Config>(kind).is_err());
}

#[test]
fn unnamed_targets_are_named_by_type_and_host_uniquely() {
    let mut named_one = target(TargetKind::Webhook, "https://ops.example/a");
    named_one.name = Some("ops".to_owned());
    let targets = [
        target(TargetKind::Slack, "https://hooks.slack.com/services/A"),
        target(TargetKind::Slack, "https://hooks.slack.com/services/B"),
        named_one,
        target(TargetKind::Webhook, "not a url"),
    ];
    let names: Vec<String> = named(&targets).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "slack:hooks.slack.com",
            "slack:hooks.slack.com#2",
            "ops",
            "webhook"
        ]
    );
}

#[test]
fn the_summary_is_one_line_with_the_command() {
    assert_eq!(
        summary(&event()),
        "ringops: production d-000012 (0123abc) is Failed by alice: batch 1/3 (edge-1) \
         unhealthy: edge-1: HTTP 503 <db> & co — ringops show d-000012"
    );
    let quiet = Event {
        actor: String::new(),
        reason: String::new(),
        state: DeploymentState::Active,
        ..event()
    };
    assert_eq!(
        summary(&quiet),
        "ringops: production d-000012 (0123abc) is Active — ringops show d-000012"
    );
    let long = Event {
        reason: "x".repeat(1000),
        ..event()
    };
    assert!(summary(&long).len() < 400);
}

#[test]
fn slack_text_is_escaped_and_links_to_the_deployment() {
    let linked = Event {
        link: Some("https://ringops.example/api/v1/deployments/d-000012?a=1&b=2".to_owned()),
        ..event()
    };
    let text = slack_text(&linked);
    assert!(text.contains("HTTP 503 &lt;db&gt; &amp; co"), "{text}");
    assert!(
        text.ends_with(
            " <https://ringops.example/api/v1/deployments/d-000012?a=1&amp;b=2|details>"
        ),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[test]
fn the_event_serializes_with_its_model_names() {
    let json = serde_json::to_value(event()).unwrap();
    assert_eq!(json["deployment"], "d-000012");
    assert_eq!(json["state"], "Failed");
    assert_eq!(json["at"], "2026-05-28T20:26:40.000Z");
    assert!(json.get("link").is_none());
}

#[test]
fn without_a_runtime_start_is_an_error() {
    assert!(matches!(start(Vec::new()), Err(NotifyError::NoRuntime)));
}

#[tokio::test]
async fn bad_targets_are_refused_at_start() {
    let e = start(vec![target(TargetKind::Webhook, "ftp://ops.example/")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "notify target webhook:ops.example: the url is not an http(s) URL"
    );
    let mut slack = target(TargetKind::Slack, "https://hooks.slack.com/services/x");
    slack.token_file = Some("/nonexistent".into());
    assert!(matches!(
        start(vec![slack]),
        Err(NotifyError::SlackToken { .. })
    ));

    let mut missing = target(TargetKind::Webhook, "https://ops.example/");
    missing.token_file = Some("/nonexistent/notify-token".into());
    let e = start(vec![missing]).unwrap_err();
    assert!(matches!(e, NotifyError::TokenFile { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/notify-token"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let mut blank = target(TargetKind::Webhook, "https://ops.example/");
    blank.token_file = Some(empty);
    assert!(matches!(start(vec![blank]), Err(NotifyError::Token { .. })));

    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut header = target(TargetKind::Webhook, "https://ops.example/");
    header.token_file = Some(token);
    header.header = Some("Bad Header".to_owned());
    let e = start(vec![header]).unwrap_err();
    assert!(matches!(e, NotifyError::Header { .. }), "{e:?}");
    assert!(!format!("{e:?}").contains("s3cret"));

    let mut no_token = target(TargetKind::Webhook, "https://ops.example/");
    no_token.header = Some("X-Token".to_owned());
    let e = start(vec![no_token]).unwrap_err();
    assert!(matches!(e, NotifyError::HeaderWithoutToken { .. }), "{e:?}");

    let zero = Notifier::start(NotifySettings {
        queue: 0,
        ..NotifySettings::default()
    });
    assert!(matches!(zero, Err(NotifyError::Zero("queue"))));
}

#[tokio::test]
async fn a_disabled_notifier_takes_events_and_flushes_at_once() {
    let notifier = Notifier::disabled();
    notifier.send(event());
    assert_eq!(notifier.flush(Duration::ZERO).await, Ok(()));
    assert_eq!(notifier.stats(), NotifyStats::default());
}
