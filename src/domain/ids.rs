//! Validated identifiers and scalars: parsed once at the edge, trusted afterwards.

use super::DomainError;

/// A session id: a positive integer assigned by the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(i64);

impl SessionId {
    pub fn parse(raw: i64, field: &str) -> Result<Self, DomainError> {
        if raw <= 0 {
            return Err(DomainError::invalid(field, "must be a positive integer"));
        }
        Ok(Self(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A session (or world rules) version; sessions start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(i64);

impl Version {
    pub fn parse(raw: i64, field: &str) -> Result<Self, DomainError> {
        if raw < 1 {
            return Err(DomainError::invalid(field, "must be at least 1"));
        }
        Ok(Self(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// The idempotency key of a write (AIP-155). Empty means "not idempotent".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Longest accepted id; a UUID is 36 characters.
    pub const MAX_CHARS: usize = 128;

    /// `Ok(None)` for an empty id.
    pub fn parse(raw: &str) -> Result<Option<Self>, DomainError> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(DomainError::invalid(
                "request_id",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Some(Self(raw.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A page size: 0 means the default; at most [`PageSize::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u64);

impl PageSize {
    pub const DEFAULT: u64 = 50;
    pub const MAX: u64 = 1000;

    pub fn parse(raw: i32) -> Result<Self, DomainError> {
        match raw {
            0 => Ok(Self(Self::DEFAULT)),
            n if n < 0 => Err(DomainError::invalid("page_size", "must not be negative")),
            n if n as u64 > Self::MAX => Err(DomainError::invalid(
                "page_size",
                format!("must be at most {}", Self::MAX),
            )),
            n => Ok(Self(n as u64)),
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// An opaque cursor: the last id of the previous page, tagged with what it pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub after_id: i64,
}

impl PageToken {
    /// `Ok(None)` for an empty token (the first page). `kind` is "sessions" or "events",
    /// so a token from one listing cannot be replayed into the other.
    pub fn parse(raw: &str, kind: &str) -> Result<Option<Self>, DomainError> {
        if raw.is_empty() {
            return Ok(None);
        }
        let bad = || DomainError::invalid("page_token", "is not a token this listing returned");
        let decoded = hex_decode(raw).ok_or_else(bad)?;
        let (tag, id) = decoded.split_once(':').ok_or_else(bad)?;
        let after_id = id.parse::<i64>().map_err(|_| bad())?;
        if tag != kind || after_id <= 0 {
            return Err(bad());
        }
        Ok(Some(Self { after_id }))
    }

    pub fn encode(after_id: i64, kind: &str) -> String {
        format!("{kind}:{after_id}")
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn hex_decode(raw: &str) -> Option<String> {
    if !raw.len().is_multiple_of(2) || raw.len() > 128 {
        return None;
    }
    let bytes = (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(raw.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let token = PageToken::encode(42, "sessions");
        assert_eq!(
            PageToken::parse(&token, "sessions").unwrap(),
            Some(PageToken { after_id: 42 })
        );
        assert_eq!(PageToken::parse("", "sessions").unwrap(), None);
        for bad in [
            "zz",
            "abc",
            "not-a-token",
            &PageToken::encode(42, "events"),
            &PageToken::encode(-1, "sessions"),
        ] {
            assert!(PageToken::parse(bad, "sessions").is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn ids_and_versions_reject_non_positive_values() {
        assert!(SessionId::parse(0, "session_id").is_err());
        assert!(SessionId::parse(-3, "session_id").is_err());
        assert_eq!(SessionId::parse(7, "session_id").unwrap().get(), 7);
        assert!(Version::parse(0, "expected_version").is_err());
        assert_eq!(Version::parse(1, "expected_version").unwrap().get(), 1);
    }

    #[test]
    fn request_ids_are_optional_and_bounded() {
        assert_eq!(RequestId::parse("").unwrap(), None);
        assert!(RequestId::parse(&"x".repeat(128)).unwrap().is_some());
        assert!(RequestId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(PageSize::parse(0).unwrap().get(), PageSize::DEFAULT);
        assert_eq!(PageSize::parse(1000).unwrap().get(), 1000);
        assert!(PageSize::parse(1001).is_err());
        assert!(PageSize::parse(-1).is_err());
    }
}
