use super::*;
use axum::http::HeaderValue;
use hmac::{Hmac, KeyInit, Mac};

type HmacSha256 = Hmac<sha2::Sha256>;

const SECRET: &[u8] = b"s3cret";
const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"0123abcd"}"#;

fn secret(bytes: &[u8]) -> Secret {
    Secret::new(bytes).expect("not empty")
}

/// HMAC-SHA256 of `body` with `key`, as hex: the signature a forge sends.
fn sign(key: &[u8], body: &[u8]) -> String {
    let mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("any key");
    hex::encode(mac.chain_update(body).finalize().into_bytes())
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).expect("header value"));
    }
    map
}

fn github(key: &[u8], body: &[u8]) -> HeaderMap {
    headers(&[(GITHUB_SIGNATURE, &format!("sha256={}", sign(key, body)))])
}

#[test]
fn github_documentation_vector() {
    // From GitHub's "Validating webhook deliveries"; checked with
    // `printf 'Hello, World!' | openssl dgst -sha256 -hmac "It's a Secret to Everybody"`.
    let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let h = headers(&[(GITHUB_SIGNATURE, signature)]);
    let verified = verify(&h, b"Hello, World!", &secret(b"It's a Secret to Everybody"));
    assert_eq!(
        verified,
        Ok(Verified {
            style: Style::GitHub,
            git_ref: None
        })
    );
    assert_eq!(
        sign(b"s3cret", br#"{"ref":"refs/heads/main"}"#),
        "232a5e067b6a5aa567ed5a1d21a0dffaf6ef0eeecb6bd9bcf43b3d5ef3fc4f43",
        "the helper agrees with openssl"
    );
}

#[test]
fn each_style_is_recognized_with_the_pushed_ref() {
    let main = Some("refs/heads/main".to_owned());
    let gitea = headers(&[(GITEA_SIGNATURE, &sign(SECRET, BODY))]);
    let gitlab = headers(&[(GITLAB_TOKEN, "s3cret")]);
    for (h, style) in [
        (github(SECRET, BODY), Style::GitHub),
        (gitea, Style::Gitea),
        (gitlab, Style::GitLab),
    ] {
        let expected = Verified {
            style,
            git_ref: main.clone(),
        };
        assert_eq!(verify(&h, BODY, &secret(SECRET)), Ok(expected), "{style}");
    }
}

#[test]
fn gitea_wins_when_it_also_sends_githubs_header() {
    let mut h = github(SECRET, BODY);
    h.append(
        GITEA_SIGNATURE,
        HeaderValue::from_str(&sign(SECRET, BODY)).expect("hex"),
    );
    let v = verify(&h, BODY, &secret(SECRET)).expect("verified");
    assert_eq!(v.style, Style::Gitea);
}

#[test]
fn a_tampered_body_or_another_secret_is_a_bad_signature() {
    let tampered = br#"{"ref":"refs/heads/evil","after":"0123abcd"}"#;
    let bad = |style| Err(WebhookError::BadSignature { style });
    assert_eq!(
        verify(&github(SECRET, BODY), tampered, &secret(SECRET)),
        bad(Style::GitHub)
    );
    assert_eq!(
        verify(&github(b"other", BODY), BODY, &secret(SECRET)),
        bad(Style::GitHub)
    );
    let gitea = headers(&[(GITEA_SIGNATURE, &sign(SECRET, BODY))]);
    assert_eq!(verify(&gitea, tampered, &secret(SECRET)), bad(Style::Gitea));
    assert_eq!(verify(&gitea, BODY, &secret(b"other")), bad(Style::Gitea));
    for token in ["s3cre", "s3cret ", "S3CRET", "s3cret2"] {
        let h = headers(&[(GITLAB_TOKEN, token)]);
        assert_eq!(
            verify(&h, BODY, &secret(SECRET)),
            bad(Style::GitLab),
            "{token}"
        );
    }
}

#[test]
fn no_header_is_a_missing_signature() {
    let h = headers(&[
        ("x-hub-signature", "sha1=0000"),
        ("content-type", "application/json"),
    ]);
    assert_eq!(
        verify(&h, BODY, &secret(SECRET)),
        Err(WebhookError::MissingSignature)
    );
    assert_eq!(
        WebhookError::MissingSignature.result(),
        WebhookResult::MissingSignature
    );
}

#[test]
fn malformed_headers_are_named() {
    let good = sign(SECRET, BODY);
    let cases = [
        (GITHUB_SIGNATURE, good.clone(), "expected sha256=<hex>"),
        (
            GITHUB_SIGNATURE,
            format!("sha1={good}"),
            "expected sha256=<hex>",
        ),
        (GITHUB_SIGNATURE, "sha256=zz".to_owned(), "not hexadecimal"),
        (
            GITHUB_SIGNATURE,
            format!("sha256={}", &good[..62]),
            "expected 64 hex digits (HMAC-SHA256)",
        ),
        (
            GITEA_SIGNATURE,
            format!("{good}00"),
            "expected 64 hex digits (HMAC-SHA256)",
        ),
    ];
    for (header, value, reason) in cases {
        let h = headers(&[(header, &value)]);
        let err = verify(&h, BODY, &secret(SECRET)).expect_err("malformed");
        assert_eq!(err, WebhookError::Malformed { header, reason }, "{value}");
        assert_eq!(err.result(), WebhookResult::Malformed);
    }
    let twice = headers(&[(GITLAB_TOKEN, "s3cret"), (GITLAB_TOKEN, "s3cret")]);
    let err = verify(&twice, BODY, &secret(SECRET)).expect_err("twice");
    assert_eq!(
        err.to_string(),
        "malformed x-gitlab-token: given more than once"
    );
}

#[test]
fn the_ref_is_optional_information() {
    assert_eq!(
        pushed_ref(b"payload=%7B%7D"),
        None,
        "form-encoded bodies carry no ref here"
    );
    assert_eq!(pushed_ref(br#"{"zen":"Keep it simple."}"#), None);
    assert_eq!(
        pushed_ref(br#"{"ref":"refs/tags/v1"}"#).as_deref(),
        Some("refs/tags/v1")
    );
    let v = verify(&github(SECRET, b"not json"), b"not json", &secret(SECRET)).expect("verified");
    assert_eq!(v.git_ref, None);
}
