//! The ACL APIs (CreateAcls, DescribeAcls, DeleteAcls). Freshet has no authorizer, so each is
//! answered as Kafka answers them without one: SECURITY_DISABLED, "No authorizer is configured",
//! for every creation and deletion filter, and for a describe. A client learns that ACLs are not
//! enforced here, rather than that the API is unknown.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use freshet_coord::code;
use futures::future::BoxFuture;

use crate::dispatch::{Handled, Request};

const NO_AUTHORIZER: &str = "No authorizer is configured: Freshet does not enforce ACLs";

fn message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str(NO_AUTHORIZER))
}

/// CreateAcls: SECURITY_DISABLED for each creation.
pub(crate) fn serve_create(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: CreateAclsRequest = r.decode()?;
        let results = request
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default().with_error_code(code::SECURITY_DISABLED).with_error_message(message())
            })
            .collect();
        r.respond(&CreateAclsResponse::default().with_results(results))
    })
}

/// DescribeAcls: SECURITY_DISABLED.
pub(crate) fn serve_describe(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let _: DescribeAclsRequest = r.decode()?;
        r.respond(
            &DescribeAclsResponse::default().with_error_code(code::SECURITY_DISABLED).with_error_message(message()),
        )
    })
}

/// DeleteAcls: SECURITY_DISABLED for each filter.
pub(crate) fn serve_delete(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: DeleteAclsRequest = r.decode()?;
        let results = request
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default().with_error_code(code::SECURITY_DISABLED).with_error_message(message())
            })
            .collect();
        r.respond(&DeleteAclsResponse::default().with_filter_results(results))
    })
}
