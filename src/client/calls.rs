//! The rest of the API in the same style as the update loop: retrying, idempotent
//! wrappers for AdvanceSession, DeleteSession and PutWorldRules, a typed outcome for a
//! plain UpdateSession, and listings as streams that page on their own.

use std::future::Future;

use futures::{Stream, StreamExt, stream};
use tonic::Code;

use super::{ClientError, SessionClient, new_request_id, request_id_or_new, retry::Budget};
use crate::{
    domain::Session,
    wire::{
        pb,
        status::{conflict_session, rpc_status},
    },
};

/// What a plain [`SessionClient::update`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// Written: the session at its new version.
    Updated(Session),
    /// Refused with ABORTED: the session moved on; this is where it is now.
    Conflict { current: Session },
}

/// What [`SessionClient::advance`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum AdvanceOutcome {
    /// Moved along the edge: the session at its new version.
    Advanced(Session),
    /// The session is no longer at the edge's start (another device moved it).
    Moved { current: Session },
}

/// The page size listings ask for.
const PAGE: i32 = 200;

impl SessionClient {
    /// UpdateSession with explicit fields, no re-apply: a conflict is an outcome, not
    /// an error. Resent with the same request id while the server is unreachable.
    pub async fn update(&self, mut req: pb::UpdateSessionRequest) -> Result<UpdateOutcome, ClientError> {
        req.request_id = request_id_or_new(req.request_id);
        let sent = self
            .session_call(|mut stub, r| async move { stub.update_session(r).await }, req)
            .await;
        match sent {
            Ok(session) => Ok(UpdateOutcome::Updated(session)),
            Err(ClientError::Status(status)) => match conflict_session(&status) {
                Some(current) => Ok(UpdateOutcome::Conflict { current }),
                None => Err(ClientError::Status(status)),
            },
            Err(e) => Err(e),
        }
    }

    /// AdvanceSession from `base` (its node and version) along `edge_id` to
    /// `to_node_id`. One request id throughout: resent as is while the server is
    /// unreachable, and re-sent at the newer version after a conflict that left the
    /// session on the same node (someone changed its flags meanwhile). If the session
    /// has moved to another node, that is the outcome.
    pub async fn advance(
        &self,
        base: &Session,
        edge_id: i64,
        to_node_id: i64,
    ) -> Result<AdvanceOutcome, ClientError> {
        let mut budget = Budget::new(&self.policy, &self.stats);
        let from = base.current_node_id;
        let mut req = pb::AdvanceSessionRequest {
            session_id: base.id,
            edge_id,
            from_node_id: from,
            to_node_id,
            expected_version: Some(base.version),
            request_id: new_request_id(),
        };
        loop {
            let sent = self
                .session_call(
                    |mut stub, r| async move { stub.advance_session(r).await },
                    req.clone(),
                )
                .await;
            let current = match sent {
                Ok(session) => return Ok(AdvanceOutcome::Advanced(session)),
                Err(ClientError::Status(status)) => match conflict_session(&status) {
                    Some(current) => current,
                    None => return Err(ClientError::Status(status)),
                },
                Err(e) => return Err(e),
            };
            self.stats.conflict();
            if current.current_node_id != from {
                return Ok(AdvanceOutcome::Moved { current });
            }
            if !budget.again().await {
                let status = tonic::Status::aborted("version conflicts outlasted the retry policy");
                return Err(budget.exhausted(Some(current), status));
            }
            req.expected_version = Some(current.version);
        }
    }

    /// DeleteSession (with `expected_version`, only at that version). Idempotent: one
    /// request id, resent as is while the server is unreachable, so a delete whose
    /// answer was lost is answered from the server's record.
    pub async fn delete(&self, session_id: i64, expected_version: Option<i64>) -> Result<(), ClientError> {
        let req = pb::DeleteSessionRequest {
            session_id,
            expected_version,
            request_id: new_request_id(),
        };
        self.resend(|mut stub, r| async move { stub.delete_session(r).await }, req)
            .await
    }

    /// PutWorldRules (admin), replacing the rules only at `expected_version` (0: only
    /// if the world has none yet). Resent while the server is unreachable; a resend
    /// refused because the first attempt already wrote these very rules is answered
    /// with them, so a lost answer does not turn into a conflict.
    pub async fn put_world_rules(
        &self,
        world_id: i64,
        rules: pb::WorldRules,
        expected_version: Option<i64>,
    ) -> Result<pb::WorldRules, ClientError> {
        let req = pb::PutWorldRulesRequest {
            world_id,
            rules: Some(rules.clone()),
            expected_version,
        };
        let sent = self
            .resend(|mut stub, r| async move { stub.put_world_rules(r).await }, req)
            .await;
        match sent {
            Err(ClientError::Exhausted { status, .. } | ClientError::Status(status))
                if status.code() == Code::Aborted =>
            {
                match written_already(&status, &rules, expected_version) {
                    Some(current) => Ok(current),
                    None => Err(ClientError::Status(status)),
                }
            }
            other => other,
        }
    }

    /// GetWorldRules: a world's own rules, or the defaults at version 0.
    pub async fn world_rules(&self, world_id: i64) -> Result<pb::WorldRules, ClientError> {
        let req = pb::GetWorldRulesRequest { world_id };
        self.resend(|mut stub, r| async move { stub.get_world_rules(r).await }, req)
            .await
    }

    /// The caller's sessions (an admin's: everyone's), newest first, optionally of one
    /// world, fetched a page at a time as the stream is read.
    pub fn list_sessions(
        &self,
        world_id: Option<i64>,
    ) -> impl Stream<Item = Result<Session, ClientError>> + use<> {
        let client = self.clone();
        paged(move |page_token| {
            let client = client.clone();
            async move {
                let req = pb::ListSessionsRequest {
                    page_size: PAGE,
                    page_token,
                    world_id,
                };
                let page = client
                    .resend(|mut stub, r| async move { stub.list_sessions(r).await }, req)
                    .await?;
                let sessions = page
                    .sessions
                    .into_iter()
                    .map(|g| Session::try_from(g).map_err(ClientError::from))
                    .collect::<Vec<_>>();
                Ok((sessions, page.next_page_token))
            }
        })
    }

    /// A session's audit trail, oldest first, a page at a time as the stream is read.
    pub fn list_events(
        &self,
        session_id: i64,
    ) -> impl Stream<Item = Result<pb::SessionEvent, ClientError>> + use<> {
        let client = self.clone();
        paged(move |page_token| {
            let client = client.clone();
            async move {
                let req = pb::ListSessionEventsRequest {
                    session_id,
                    page_size: PAGE,
                    page_token,
                };
                let page = client
                    .resend(
                        |mut stub, r| async move { stub.list_session_events(r).await },
                        req,
                    )
                    .await?;
                Ok((page.events.into_iter().map(Ok).collect(), page.next_page_token))
            }
        })
    }
}

/// The current rules carried by a rules conflict, if they are `sent` written by an
/// earlier attempt of this very call (one version past `expected`).
fn written_already(
    status: &tonic::Status,
    sent: &pb::WorldRules,
    expected: Option<i64>,
) -> Option<pb::WorldRules> {
    let current = rpc_status(status)?
        .details
        .iter()
        .find_map(|a| a.to_msg::<pb::WorldRules>().ok())?;
    let same = current.tiers == sent.tiers
        && current.intimacy_levels == sent.intimacy_levels
        && current.mode == sent.mode
        && (sent.turn_delta_seconds.is_none() || current.turn_delta_seconds == sent.turn_delta_seconds);
    let next = expected.map(|v| v + 1);
    (same && next.is_none_or(|v| current.version == v)).then_some(current)
}

/// A stream over pages: `fetch(token)` returns one page's items and the next token
/// (empty after the last page). A failed page ends the stream with its error.
fn paged<T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T, ClientError>>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<(Vec<Result<T, ClientError>>, String), ClientError>>,
{
    // (the next token, or None once the last page was read)
    stream::unfold(Some(String::new()), move |token| {
        let fetched = token.map(&fetch);
        async move {
            let (items, next) = match fetched?.await {
                Ok(page) => page,
                Err(e) => return Some((vec![Err(e)], None)),
            };
            Some((items, (!next.is_empty()).then_some(next)))
        }
    })
    .flat_map(stream::iter)
}
