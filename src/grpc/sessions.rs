//! The SessionService handlers: identity, parse (bad input stops in `wire`),
//! delegate to the use case, convert. Errors map in `status.rs`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::auth::caller;
use crate::{
    domain::{CreateRequest, EventsQuery, ListQuery, PutRules, SessionId, Version, Write},
    pb::{self, session_service_server::SessionService},
    service::{ServiceError, Sessions},
};

/// The gRPC face of [`Sessions`].
#[derive(Clone)]
pub struct SessionApi {
    sessions: Sessions,
}

impl SessionApi {
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }

    async fn write(
        &self,
        req: Request<impl TryInto<Write, Error = crate::domain::DomainError>>,
    ) -> Result<pb::GameSession, Status> {
        let caller = caller(&req)?;
        let write: Write = req.into_inner().try_into()?;
        let session = self.sessions.write(&caller, write).await?;
        let session = session.ok_or_else(|| ServiceError::Internal("write returned no session".into()))?;
        Ok(pb::GameSession::from(&*session))
    }
}

type WatchResponse = Pin<Box<dyn Stream<Item = Result<pb::GameSession, Status>> + Send>>;

#[tonic::async_trait]
impl SessionService for SessionApi {
    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        let caller = caller(&req)?;
        let create = CreateRequest::try_from(req.into_inner())?;
        let session = self.sessions.create(&caller, create).await?;
        Ok(Response::new(pb::GameSession::from(&*session)))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        let caller = caller(&req)?;
        let (id, min_version) = <(SessionId, Option<Version>)>::try_from(req.into_inner())?;
        let session = self.sessions.get(&caller, id, min_version).await?;
        Ok(Response::new(pb::GameSession::from(&*session)))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = caller(&req)?;
        let query = ListQuery::try_from(req.into_inner())?;
        let page = self.sessions.list(&caller, query).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_session(
        &self,
        req: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        self.write(req).await.map(Response::new)
    }

    async fn advance_session(
        &self,
        req: Request<pb::AdvanceSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        self.write(req).await.map(Response::new)
    }

    async fn mutate_session(
        &self,
        req: Request<pb::MutateSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        self.write(req).await.map(Response::new)
    }

    async fn delete_session(&self, req: Request<pb::DeleteSessionRequest>) -> Result<Response<()>, Status> {
        let caller = caller(&req)?;
        let write = Write::try_from(req.into_inner())?;
        self.sessions.write(&caller, write).await?;
        Ok(Response::new(()))
    }

    async fn list_session_events(
        &self,
        req: Request<pb::ListSessionEventsRequest>,
    ) -> Result<Response<pb::ListSessionEventsResponse>, Status> {
        let caller = caller(&req)?;
        let query = EventsQuery::try_from(req.into_inner())?;
        let page = self.sessions.events(&caller, query).await?;
        Ok(Response::new(pb::ListSessionEventsResponse {
            events: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type WatchSessionStream = WatchResponse;

    async fn watch_session(
        &self,
        req: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<WatchResponse>, Status> {
        let caller = caller(&req)?;
        let (id, since) = <(SessionId, i64)>::try_from(req.into_inner())?;
        let stream = self.sessions.watch(caller, id, since).await?;
        let stream = stream.map(|item| item.map(|s| pb::GameSession::from(&*s)).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn put_world_rules(
        &self,
        req: Request<pb::PutWorldRulesRequest>,
    ) -> Result<Response<pb::WorldRules>, Status> {
        let caller = caller(&req)?;
        let put = PutRules::try_from(req.into_inner())?;
        let saved = self.sessions.put_world_rules(&caller, put).await?;
        Ok(Response::new(pb::WorldRules::from(&saved)))
    }

    async fn get_world_rules(
        &self,
        req: Request<pb::GetWorldRulesRequest>,
    ) -> Result<Response<pb::WorldRules>, Status> {
        caller(&req)?;
        let world_id = i64::try_from(req.into_inner())?;
        let rules = self.sessions.world_rules(world_id).await?;
        Ok(Response::new(pb::WorldRules::from(&rules)))
    }
}
