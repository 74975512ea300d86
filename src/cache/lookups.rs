//! Cache lookups of strong reads, grouped: every lookup queued while the previous
//! group was on its way goes to Redis in ONE script call (per slot), instead of one
//! round trip per read; and a lookup whose session this replica already holds asks
//! only whether the cached version is still the one it holds.
//!
//! Equally strong as reading the entry itself: a version names exactly one committed
//! state, so when the shared cache holds version v and this replica's copy is v, the
//! copy is the entry. Only the answer travels differently (no 1 KiB document sent
//! back and decoded when it is already here). A group never waits for company: it
//! takes what is queued when the previous one is answered.

use std::{collections::BTreeMap, sync::Weak};

use bytes::Bytes;
use fred::{prelude::*, types::scripts::Script};
use tokio::sync::{mpsc, oneshot};

use super::{RedisCache, groups};

/// For each KEYS[i] (a session's hash) and ARGV[i] (the version this replica holds,
/// "0" for none): `false` if there is no entry; `{v}` if the entry is at exactly
/// that version; else `{v, d}` (a tombstone has no `d`). Reads only.
const LOOKUP_MANY_LUA: &str = r"
local found = {}
for i = 1, #KEYS do
  local v = redis.call('HGET', KEYS[i], 'v')
  if not v then
    found[i] = false
  elseif v == ARGV[i] then
    found[i] = {v}
  else
    found[i] = {v, redis.call('HGET', KEYS[i], 'd')}
  end
end
return found
";

/// Most lookups in one script call.
const MAX_GROUP: usize = 128;

/// What Redis holds for one session.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Found {
    /// No entry.
    Nothing,
    /// The entry is at the version the lookup holds.
    Same,
    /// The entry's version and data (none for a tombstone).
    Entry(i64, Option<Bytes>),
}

/// A lookup: the session, the version this replica holds (0: none), and where
/// the answer goes.
pub(super) type Queued = (i64, i64, oneshot::Sender<Result<Found, Error>>);

pub(super) type Queue = mpsc::UnboundedSender<Queued>;
pub(super) type Receiver = mpsc::UnboundedReceiver<Queued>;

pub(super) fn queue() -> (Queue, Receiver) {
    mpsc::unbounded_channel()
}

/// Sends queued lookups until the cache is dropped. A group Redis is slow to answer
/// (each command gives up after command_timeout) finishes on its own.
pub(super) async fn run(cache: Weak<RedisCache>, mut rx: Receiver) {
    let script = Script::from_lua(LOOKUP_MANY_LUA);
    while let Some(group) = groups::next(&mut rx, MAX_GROUP).await {
        let Some(cache) = cache.upgrade() else { return };
        let (limit, script) = (cache.in_line_limit(), script.clone());
        let sent = async move { send_group(&cache, &script, group).await };
        groups::in_line_for(limit, sent).await;
    }
}

/// One script call per slot, sent together; then answers each lookup.
async fn send_group(cache: &RedisCache, script: &Script, group: Vec<Queued>) {
    let mut slots: BTreeMap<i64, Vec<Queued>> = BTreeMap::new();
    for lookup in group {
        slots
            .entry(cache.layout.group(lookup.0))
            .or_default()
            .push(lookup);
    }
    let calls = slots.into_values().map(|lookups| async move {
        let asked: Vec<(i64, i64)> = lookups.iter().map(|(id, held, _)| (*id, *held)).collect();
        let answers: Vec<Result<Found, Error>> = match send(cache, script, &asked).await {
            Ok(found) => found.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e); lookups.len()],
        };
        for ((_, _, answer), found) in lookups.into_iter().zip(answers) {
            // The reader may have given up (its own timeout): nothing to answer.
            let _ = answer.send(found);
        }
    });
    futures::future::join_all(calls).await;
}

/// One script call for `asked` (sessions of one slot, with the versions held).
async fn send(cache: &RedisCache, script: &Script, asked: &[(i64, i64)]) -> Result<Vec<Found>, Error> {
    let keys = || -> Vec<String> { asked.iter().map(|(id, _)| cache.key(*id)).collect() };
    let args = || -> Vec<Value> { asked.iter().map(|(_, held)| Value::from(*held)).collect() };
    let reply: Value = cache.eval(script, LOOKUP_MANY_LUA, keys, args).await?;
    parse(reply, asked.len())
}

/// The script's answer, one [`Found`] per key.
fn parse(reply: Value, expected: usize) -> Result<Vec<Found>, Error> {
    let malformed = || Error::new(ErrorKind::Parse, "unexpected answer to the lookup script");
    let Value::Array(items) = reply else {
        return Err(malformed());
    };
    if items.len() != expected {
        return Err(malformed());
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::Null => Ok(Found::Nothing),
            Value::Array(mut parts) if parts.len() == 1 => {
                parts.pop().as_ref().and_then(version).ok_or_else(malformed)?;
                Ok(Found::Same)
            }
            Value::Array(parts) if parts.len() == 2 => {
                let mut parts = parts.into_iter();
                let version = parts.next().as_ref().and_then(version).ok_or_else(malformed)?;
                let data = match parts.next() {
                    Some(Value::Null) | None => None,
                    Some(v) => Some(v.into_bytes().ok_or_else(malformed)?),
                };
                Ok(Found::Entry(version, data))
            }
            _ => Err(malformed()),
        })
        .collect()
}

/// A version as the script returns it: the hash field's decimal text.
fn version(v: &Value) -> Option<i64> {
    v.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_answers_parse_one_per_key() {
        let reply = Value::Array(vec![
            Value::Null,
            Value::Array(vec![Value::from("7")]),
            Value::Array(vec![Value::from("8"), Value::Bytes(vec![1, 2].into())]),
            Value::Array(vec![Value::from("9007199254740992"), Value::Null]),
        ]);
        assert_eq!(
            parse(reply, 4).unwrap(),
            vec![
                Found::Nothing,
                Found::Same,
                Found::Entry(8, Some(Bytes::from_static(&[1, 2]))),
                Found::Entry(1 << 53, None),
            ]
        );
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_an_error_not_a_guess() {
        assert!(parse(Value::Array(vec![Value::Null]), 2).is_err());
        assert!(parse(Value::from("OK"), 1).is_err());
        assert!(parse(Value::Array(vec![Value::Array(vec![])]), 1).is_err());
    }
}
