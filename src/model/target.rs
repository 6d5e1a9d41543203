//! Where a worker is reached: its `target` (or a recorded location) parsed once.

use std::fmt;
use std::str::FromStr;

/// How ringops reaches a worker other than through the default folder under the state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A folder on this host: `dir:/absolute/path`.
    Dir {
        /// The absolute path.
        path: String,
    },
    /// A `ringops agent`: `https://host:port` (`http://` only on loopback, which the
    /// transport checks).
    Agent {
        /// The agent's base URL.
        url: String,
    },
}

/// A string that is no target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid target `{0}`: expected `dir:/absolute/path` or `https://host:port`")]
pub struct TargetError(pub String);

impl FromStr for Target {
    type Err = TargetError;

    /// `dir:` and an absolute path, or an `https://` (`http://`) URL.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.starts_with("https://") || text.starts_with("http://") {
            return Ok(Target::Agent {
                url: text.to_owned(),
            });
        }
        match text.strip_prefix("dir:") {
            Some(path) if path.starts_with('/') => Ok(Target::Dir {
                path: path.to_owned(),
            }),
            _ => Err(TargetError(text.to_owned())),
        }
    }
}

impl Target {
    /// Whether a folder target climbs out of where it points (`..`): refused in a
    /// manifest, where it would hide which folder a worker really writes to.
    pub fn climbs(&self) -> bool {
        match self {
            Target::Dir { path } => path.split('/').any(|c| c == ".."),
            Target::Agent { .. } => false,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Dir { path } => write!(f, "dir:{path}"),
            Target::Agent { url } => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_show_as_written() {
        for text in ["dir:/srv/w1", "https://w1:7443", "http://127.0.0.1:9"] {
            let target: Target = text.parse().expect(text);
            assert_eq!(target.to_string(), text);
        }
        let dir: Target = "dir:/srv/../etc".parse().expect("absolute");
        assert!(dir.climbs());
        for bad in ["dir:srv", "/srv", "ssh://w1", ""] {
            assert_eq!(bad.parse::<Target>(), Err(TargetError(bad.to_owned())));
        }
    }
}
