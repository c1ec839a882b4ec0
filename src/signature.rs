//! Signed requests: the Atlas function signs every body with a secret it shares with the
//! handler, so only its holder can write to the lake, and a captured request stops being
//! accepted once it is older than the tolerance.
//!
//! ```text
//! X-Ingest-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
//! ```
//!
//! The header may carry several `v1=` values: while the sender rotates its secret it signs
//! with the old and the new one, and one match is enough. Keys other than `t` and `v1` are
//! ignored, so a later scheme can be sent beside `v1` without breaking this handler.
//!
//! The header is checked in two steps, so an unsigned or stale request is refused before
//! its body is read: [`Verifier::check_header`] (form and freshness), then
//! [`Verifier::verify_body`] over the exact bytes received.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::configuration::Secret;

/// The header's name (HTTP header names are case-insensitive).
pub const HEADER: &str = "x-ingest-signature";
/// Longer headers are refused unread: a real one holds a few signatures.
const MAX_HEADER_LEN: usize = 4096;
/// More `v1=` values than this are refused: rotation needs two.
const MAX_SIGNATURES: usize = 8;
/// SHA-256 output, the length of every `v1` value once decoded.
const SIGNATURE_LEN: usize = 32;

/// Why a request's signature was refused. The text names the problem, never a secret or
/// the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Ingest-Signature header is missing")]
    Missing,
    #[error("the X-Ingest-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the signature was made {seconds} s {direction} the handler's clock; at most INGEST_HMAC_TOLERANCE_SECS ({tolerance} s) is accepted")]
    OutsideTolerance {
        seconds: u64,
        direction: &'static str,
        tolerance: u64,
    },
    #[error("no v1 signature in X-Ingest-Signature matches the body")]
    Mismatch,
}

/// A parsed `X-Ingest-Signature` header: its timestamp and the signatures it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// The `t` value as sent: the signed text starts with exactly these digits.
    timestamp_text: String,
    timestamp: u64,
    signatures: Vec<[u8; SIGNATURE_LEN]>,
}

#[cfg(test)]
impl SignatureHeader {
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    pub fn signatures(&self) -> usize {
        self.signatures.len()
    }
}

impl FromStr for SignatureHeader {
    type Err = SignatureError;

    fn from_str(text: &str) -> Result<SignatureHeader, SignatureError> {
        use SignatureError::Malformed;
        if text.len() > MAX_HEADER_LEN {
            return Err(Malformed("longer than 4096 bytes"));
        }
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for element in text.split(',').map(str::trim) {
            if element.is_empty() {
                continue;
            }
            let (key, value) = element
                .split_once('=')
                .ok_or(Malformed("every element must be key=value"))?;
            match key.trim() {
                "t" => {
                    if timestamp.is_some() {
                        return Err(Malformed("t= appears more than once"));
                    }
                    let value = value.trim();
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(Malformed("t= must be unix seconds (digits only)"));
                    }
                    let seconds = value
                        .parse::<u64>()
                        .map_err(|_| Malformed("t= is out of range"))?;
                    timestamp = Some((value.to_owned(), seconds));
                }
                "v1" => {
                    if signatures.len() == MAX_SIGNATURES {
                        return Err(Malformed("more than 8 v1= signatures"));
                    }
                    signatures.push(
                        decode_hex(value.trim())
                            .ok_or(Malformed("v1= must be 64 hexadecimal digits"))?,
                    );
                }
                // Another scheme (v0, v2, ...): not ours to judge.
                _ => {}
            }
        }
        let (timestamp_text, timestamp) = timestamp.ok_or(Malformed("t= is missing"))?;
        if signatures.is_empty() {
            return Err(Malformed("no v1= signature"));
        }
        Ok(SignatureHeader {
            timestamp_text,
            timestamp,
            signatures,
        })
    }
}

/// 64 hex digits (either case) into 32 bytes.
fn decode_hex(text: &str) -> Option<[u8; SIGNATURE_LEN]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if digits.len() != SIGNATURE_LEN * 2 {
        return None;
    }
    let mut bytes = [0u8; SIGNATURE_LEN];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

/// Where "now" comes from: the system clock, or a fixed instant in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    System,
    #[cfg(test)]
    Fixed(u64),
}

impl Clock {
    fn now(self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0),
            #[cfg(test)]
            Clock::Fixed(seconds) => seconds,
        }
    }
}

/// Checks request signatures against the handler's secret.
#[derive(Clone)]
pub struct Verifier {
    /// HMAC-SHA256 keyed with the secret, cloned for every request.
    key: Hmac<Sha256>,
    tolerance_secs: u64,
    clock: Clock,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("key", &"redacted")
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl Verifier {
    pub fn new(secret: &Secret, tolerance_secs: u64) -> Verifier {
        Verifier {
            key: <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC accepts keys of any length"),
            tolerance_secs,
            clock: Clock::System,
        }
    }

    /// Checks the header alone: present, well formed, and made within the tolerance
    /// (either side of now: a clock running ahead is as suspect as a replay). Cheap, so it
    /// runs before the body is read. `header` is every value of the header joined by `,`.
    pub fn check_header(&self, header: Option<&str>) -> Result<SignatureHeader, SignatureError> {
        let header: SignatureHeader = header.ok_or(SignatureError::Missing)?.parse()?;
        let now = self.clock.now();
        let (seconds, direction) = if header.timestamp <= now {
            (now - header.timestamp, "before")
        } else {
            (header.timestamp - now, "after")
        };
        if seconds > self.tolerance_secs {
            return Err(SignatureError::OutsideTolerance {
                seconds,
                direction,
                tolerance: self.tolerance_secs,
            });
        }
        Ok(header)
    }

    /// Checks that one of the header's signatures is the HMAC of `"<t>.<body>"`, over the
    /// exact bytes received. Each comparison takes constant time.
    pub fn verify_body(&self, header: &SignatureHeader, body: &[u8]) -> Result<(), SignatureError> {
        let mut mac = self.key.clone();
        mac.update(header.timestamp_text.as_bytes());
        mac.update(b".");
        mac.update(body);
        let matched = header
            .signatures
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok());
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// Both checks at once (tests).
    #[cfg(test)]
    pub fn verify(&self, header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
        let header = self.check_header(header)?;
        self.verify_body(&header, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-signing-secret-0123456789";
    const NOW: u64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"operationType":"insert"}"#;
    /// HMAC-SHA256(SECRET, "1700000000." + BODY), computed independently with Node's crypto.
    const KNOWN: &str = "8f2b0f2e085d312694c76084c995f2a7bb2f5b4f32fae60aa05c0ed5e1e079d7";

    fn verifier(secret: &str) -> Verifier {
        let mut verifier = Verifier::new(&Secret::new(secret), 300);
        verifier.clock = Clock::Fixed(NOW);
        verifier
    }

    fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn malformed(header: &str) -> &'static str {
        match header.parse::<SignatureHeader>() {
            Err(SignatureError::Malformed(problem)) => problem,
            other => panic!("{header:?} should be malformed, got {other:?}"),
        }
    }

    #[test]
    fn a_known_signature_verifies() {
        assert_eq!(sign(SECRET, NOW, BODY), KNOWN);
        let header = format!("t={NOW},v1={KNOWN}");
        assert_eq!(verifier(SECRET).verify(Some(&header), BODY), Ok(()));
        // Upper-case hex and spaces around elements are accepted too.
        let header = format!(" t = {NOW} , v1= {} ", KNOWN.to_uppercase());
        assert_eq!(verifier(SECRET).verify(Some(&header), BODY), Ok(()));
    }

    #[test]
    fn any_of_several_signatures_may_match_so_secrets_can_rotate() {
        let old = sign("the-old-secret-0123456789", NOW, BODY);
        let new = sign(SECRET, NOW, BODY);
        for header in [
            format!("t={NOW},v1={old},v1={new}"),
            format!("t={NOW},v1={new},v1={old}"),
            format!("v1={old},t={NOW},v0=legacy,v1={new}"),
        ] {
            assert_eq!(
                verifier(SECRET).verify(Some(&header), BODY),
                Ok(()),
                "{header}"
            );
        }
        let parsed: SignatureHeader = format!("t={NOW},v1={old},v1={new}").parse().expect("valid");
        assert_eq!((parsed.timestamp(), parsed.signatures()), (NOW, 2));
    }

    #[test]
    fn a_wrong_secret_or_another_body_does_not_match() {
        let header = format!(
            "t={NOW},v1={}",
            sign("another-secret-0123456789", NOW, BODY)
        );
        assert_eq!(
            verifier(SECRET).verify(Some(&header), BODY),
            Err(SignatureError::Mismatch)
        );
        let header = format!("t={NOW},v1={KNOWN}");
        assert_eq!(
            verifier(SECRET).verify(Some(&header), br#"{"operationType":"delete"}"#),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let header = format!("t={},v1={KNOWN}", NOW + 1);
        assert_eq!(
            verifier(SECRET).verify(Some(&header), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let verifier = verifier(SECRET);
        for (timestamp, accepted) in [
            (NOW - 300, true),
            (NOW + 300, true),
            (NOW - 301, false),
            (NOW + 301, false),
            (0, false),
        ] {
            let header = format!("t={timestamp},v1={}", sign(SECRET, timestamp, BODY));
            let outcome = verifier.verify(Some(&header), BODY);
            if accepted {
                assert_eq!(outcome, Ok(()), "t={timestamp}");
            } else {
                assert!(
                    matches!(outcome, Err(SignatureError::OutsideTolerance { .. })),
                    "t={timestamp}: {outcome:?}"
                );
            }
        }
        let header = format!("t={},v1={KNOWN}", NOW - 3600);
        let message = verifier
            .check_header(Some(&header))
            .expect_err("stale")
            .to_string();
        assert!(message.contains("3600 s before"), "{message}");
        assert!(
            message.contains("INGEST_HMAC_TOLERANCE_SECS (300 s)"),
            "{message}"
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_refused() {
        assert_eq!(
            verifier(SECRET).verify(None, BODY),
            Err(SignatureError::Missing)
        );
        let sig = KNOWN;
        assert_eq!(malformed(""), "t= is missing");
        assert_eq!(malformed(&format!("v1={sig}")), "t= is missing");
        assert_eq!(malformed(&format!("t={NOW}")), "no v1= signature");
        assert_eq!(malformed(&format!("t={NOW},v0={sig}")), "no v1= signature");
        assert_eq!(
            malformed(&format!("t={NOW},t={NOW},v1={sig}")),
            "t= appears more than once"
        );
        for bad_time in ["-5", "1.5", "abc", "", "0x10", "+7"] {
            assert_eq!(
                malformed(&format!("t={bad_time},v1={sig}")),
                "t= must be unix seconds (digits only)",
                "{bad_time}"
            );
        }
        assert_eq!(
            malformed(&format!("t=99999999999999999999999,v1={sig}")),
            "t= is out of range"
        );
        for bad_sig in [&sig[..63], &format!("{sig}0"), &sig.replace('f', "g"), ""] {
            assert_eq!(
                malformed(&format!("t={NOW},v1={bad_sig}")),
                "v1= must be 64 hexadecimal digits",
                "{bad_sig}"
            );
        }
        assert_eq!(
            malformed(&format!("t={NOW};v1={sig}")),
            "t= must be unix seconds (digits only)"
        );
        assert_eq!(
            malformed(&format!("t={NOW},{sig}")),
            "every element must be key=value"
        );
        let many = vec![format!("v1={sig}"); 9].join(",");
        assert_eq!(
            malformed(&format!("t={NOW},{many}")),
            "more than 8 v1= signatures"
        );
        let long = format!("t={NOW},v1={sig},x={}", "y".repeat(MAX_HEADER_LEN));
        assert_eq!(malformed(&long), "longer than 4096 bytes");
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let shown = format!("{:?}", verifier(SECRET));
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
