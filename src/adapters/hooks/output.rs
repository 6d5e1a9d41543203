//! What a hook printed, made safe to show: each stream goes through its own
//! [`Redactor`], which replaces secret values even when one arrives split across reads,
//! and the redacted streams meet in one [`Tail`], which keeps only the last [`KEEP`]
//! bytes. Redacting before merging means the other stream can never land in the middle
//! of a secret value and hide it from the search. No IO here.

use std::collections::BTreeSet;

/// How many bytes of output are kept: the last ones, where the error usually is.
pub const KEEP: usize = 8 * 1024;

/// What a secret value is replaced by.
pub const SENSITIVE: &str = "(sensitive value)";

/// Replaces secret values in one stream that arrives in pieces. Holds back the end of
/// a piece only when it may be the start of a value whose rest has not arrived yet, so
/// lines are passed on whole and in the order they came.
#[derive(Debug)]
pub struct Redactor {
    /// The values, longest first (so the longest of overlapping values is replaced);
    /// empty ones are left out, as they would match everywhere.
    secrets: Vec<Vec<u8>>,
    /// Which bytes start a value: most bytes are passed on after one lookup.
    starts: [bool; 256],
    /// Bytes held back from the last piece: a beginning of a value.
    carry: Vec<u8>,
    /// The longest value's length minus one: the most ever held back.
    hold: usize,
}

impl Redactor {
    /// A redactor of these values.
    pub fn new(secrets: &[&str]) -> Self {
        let unique: BTreeSet<&[u8]> = secrets
            .iter()
            .map(|s| s.as_bytes())
            .filter(|s| !s.is_empty())
            .collect();
        let mut secrets: Vec<Vec<u8>> = unique.into_iter().map(<[u8]>::to_vec).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut starts = [false; 256];
        for s in &secrets {
            starts[usize::from(s[0])] = true;
        }
        let hold = secrets.first().map_or(0, |s| s.len() - 1);
        Self {
            secrets,
            starts,
            carry: Vec::new(),
            hold,
        }
    }

    /// Takes the next piece of the stream; returns the redacted bytes now safe to show.
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(piece);
        self.replace(false)
    }

    /// The stream ended: the bytes held back, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        self.replace(true)
    }

    /// Moves the bytes held back to the output, replacing every value; unless the
    /// stream `ended`, stops where the rest may be the start of a value (the longest
    /// value that can match at a place wins, so a shorter one that is complete there
    /// waits as well).
    fn replace(&mut self, ended: bool) -> Vec<u8> {
        let buf = std::mem::take(&mut self.carry);
        let mut out = Vec::with_capacity(buf.len());
        let (mut at, mut plain) = (0, 0);
        while let Some(&first) = buf.get(at) {
            if self.starts[usize::from(first)] {
                let rest = &buf[at..];
                if !ended && rest.len() <= self.hold && self.may_grow_into_a_value(rest) {
                    break;
                }
                if let Some(s) = self.secrets.iter().find(|s| rest.starts_with(s)) {
                    out.extend_from_slice(&buf[plain..at]);
                    out.extend_from_slice(SENSITIVE.as_bytes());
                    at += s.len();
                    plain = at;
                    continue;
                }
            }
            at += 1;
        }
        out.extend_from_slice(&buf[plain..at]);
        self.carry = buf[at..].to_vec();
        out
    }

    /// Whether `rest` is the beginning of a value longer than it.
    fn may_grow_into_a_value(&self, rest: &[u8]) -> bool {
        self.secrets
            .iter()
            .any(|s| s.len() > rest.len() && s.starts_with(rest))
    }
}

/// The last [`KEEP`] bytes of everything pushed, and how many bytes were cut before them.
#[derive(Debug, Default)]
pub struct Tail {
    kept: Vec<u8>,
    cut: usize,
}

impl Tail {
    /// Appends bytes, forgetting the oldest beyond what will be kept.
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= KEEP {
            self.cut += self.kept.len() + bytes.len() - KEEP;
            self.kept.clear();
            self.kept.extend_from_slice(&bytes[bytes.len() - KEEP..]);
            return;
        }
        self.kept.extend_from_slice(bytes);
        // Trim in batches, not on every push.
        if self.kept.len() > 2 * KEEP {
            self.cut_to(KEEP);
        }
    }

    /// The text kept, starting on a whole character (invalid UTF-8 shown as U+FFFD),
    /// under a `… (N bytes cut)` line when the start was cut.
    pub fn finish(mut self) -> String {
        self.cut_to(KEEP);
        let partial = self
            .kept
            .iter()
            .take_while(|&&b| self.cut > 0 && b & 0b1100_0000 == 0b1000_0000)
            .count();
        self.kept.drain(..partial);
        self.cut += partial;
        let text = String::from_utf8_lossy(&self.kept);
        if self.cut == 0 {
            text.into_owned()
        } else {
            format!("… ({} bytes cut)\n{text}", self.cut)
        }
    }

    fn cut_to(&mut self, keep: usize) {
        let extra = self.kept.len().saturating_sub(keep);
        self.kept.drain(..extra);
        self.cut += extra;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` to a redactor in pieces of `size` bytes.
    fn redact_in_pieces(secrets: &[&str], text: &str, size: usize) -> String {
        let mut r = Redactor::new(secrets);
        let mut out = Vec::new();
        for piece in text.as_bytes().chunks(size) {
            out.extend(r.push(piece));
        }
        out.extend(r.finish());
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn values_are_replaced_however_the_stream_is_split() {
        let text = "token=hunter2 again hunter2hunter2 and hunter";
        let expected =
            "token=(sensitive value) again (sensitive value)(sensitive value) and hunter";
        for size in 1..=text.len() {
            assert_eq!(
                redact_in_pieces(&["hunter2"], text, size),
                expected,
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn only_a_possible_start_of_a_value_is_held_back() {
        let mut r = Redactor::new(&["hunter2", "s3cr3t-db"]);
        assert_eq!(r.push(b"token=hunter2\n"), b"token=(sensitive value)\n");
        assert_eq!(r.push(b"user hun"), b"user ");
        assert_eq!(r.push(b"gry\n"), b"hungry\n");
        assert_eq!(r.push(b"s3c"), b"");
        assert_eq!(r.finish(), b"s3c");
    }

    #[test]
    fn the_longest_of_overlapping_values_wins_and_empty_ones_are_ignored() {
        let secrets = ["abc", "abcdef", "", "abc"];
        assert_eq!(
            redact_in_pieces(&secrets, "xabcdefy abcx", 3),
            "x(sensitive value)y (sensitive value)x"
        );
        assert_eq!(redact_in_pieces(&[""], "plain", 2), "plain");
        assert_eq!(redact_in_pieces(&[], "plain", 2), "plain");
    }

    #[test]
    fn tail_keeps_the_last_bytes_and_says_how_many_were_cut() {
        let mut tail = Tail::default();
        tail.push(b"first\n");
        assert_eq!(tail.finish(), "first\n");

        let mut tail = Tail::default();
        for _ in 0..5000 {
            tail.push(b"0123456789");
        }
        tail.push(b"end\n");
        let text = tail.finish();
        let (note, kept) = text.split_once('\n').expect("a note line");
        assert_eq!(note, format!("… ({} bytes cut)", 50_004 - KEEP));
        assert_eq!(kept.len(), KEEP);
        assert!(kept.ends_with("789end\n"), "{kept}");

        let mut tail = Tail::default();
        tail.push(&vec![b'x'; 3 * KEEP]);
        assert!(
            tail.finish()
                .starts_with(&format!("… ({} bytes cut)\n", 2 * KEEP))
        );
    }

    #[test]
    fn tail_starts_on_a_whole_character() {
        // One byte too many: the cut falls inside the first `é`, which goes as a whole.
        let mut tail = Tail::default();
        tail.push("é".repeat(KEEP / 2).as_bytes());
        tail.push(b"x");
        let expected = format!("… (2 bytes cut)\n{}x", "é".repeat(KEEP / 2 - 1));
        assert_eq!(tail.finish(), expected);
    }
}
