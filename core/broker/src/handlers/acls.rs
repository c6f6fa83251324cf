//! The ACL APIs (CreateAcls, DescribeAcls, DeleteAcls) over the broker's [`Authorizer`]
//! (`crate::acl`). Describing needs DESCRIBE on the cluster, creating and deleting ALTER, as in
//! Kafka. Without an authorizer each is answered as Kafka answers them without one:
//! SECURITY_DISABLED, "No authorizer is configured", for every creation and deletion filter and
//! for a describe, so a client learns that ACLs are not enforced rather than that the API is
//! unknown.
//!
//! [`Authorizer`]: crate::acl::Authorizer

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use freshet_coord::code;
use futures::future::BoxFuture;

use crate::acl::{op, AclBinding, AclFilter};
use crate::dispatch::{Handled, Request};

const NO_AUTHORIZER: &str = "No authorizer is configured: set authorizer.class.name for Freshet to enforce ACLs";

fn text(message: &str) -> Option<StrBytes> {
    Some(StrBytes::from_string(message.to_owned()))
}

fn owned(s: Option<&StrBytes>) -> Option<String> {
    s.map(|s| s.to_string())
}

/// CreateAcls: each valid creation stored; an invalid one refused with INVALID_REQUEST and why.
pub(crate) fn serve_create(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: CreateAclsRequest = r.decode()?;
        let each = |error_code, message: &str| {
            let results = request
                .creations
                .iter()
                .map(|_| AclCreationResult::default().with_error_code(error_code).with_error_message(text(message)))
                .collect();
            CreateAclsResponse::default().with_results(results)
        };
        let authorizer = &r.served.authorizer;
        if !authorizer.enabled() {
            return r.respond(&each(code::SECURITY_DISABLED, NO_AUTHORIZER));
        }
        if !r.access().cluster(op::ALTER) {
            return r
                .respond(&each(code::CLUSTER_AUTHORIZATION_FAILED, "ALTER on the cluster is needed to create ACLs"));
        }
        let acls = request
            .creations
            .iter()
            .map(|c| AclBinding {
                resource_type: c.resource_type,
                resource_name: c.resource_name.to_string(),
                pattern_type: c.resource_pattern_type,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: c.operation,
                permission: c.permission_type,
            })
            .collect();
        let response = match authorizer.create(acls).await {
            Ok(outcomes) => CreateAclsResponse::default().with_results(
                outcomes
                    .into_iter()
                    .map(|why| match why {
                        None => AclCreationResult::default(),
                        Some(why) => AclCreationResult::default()
                            .with_error_code(code::INVALID_REQUEST)
                            .with_error_message(text(&why)),
                    })
                    .collect(),
            ),
            Err(e) => each(code::UNKNOWN_SERVER_ERROR, &format!("storing the ACLs: {e}")),
        };
        r.respond(&response)
    })
}

/// DescribeAcls: the ACLs the filter matches, grouped by resource pattern.
pub(crate) fn serve_describe(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: DescribeAclsRequest = r.decode()?;
        let failed = |error_code, message: &str| {
            DescribeAclsResponse::default().with_error_code(error_code).with_error_message(text(message))
        };
        let authorizer = &r.served.authorizer;
        if !authorizer.enabled() {
            return r.respond(&failed(code::SECURITY_DISABLED, NO_AUTHORIZER));
        }
        if !r.access().cluster(op::DESCRIBE) {
            return r.respond(&failed(
                code::CLUSTER_AUTHORIZATION_FAILED,
                "DESCRIBE on the cluster is needed to list ACLs",
            ));
        }
        let filter = AclFilter {
            resource_type: request.resource_type_filter,
            resource_name: owned(request.resource_name_filter.as_ref()),
            pattern_type: request.pattern_type_filter,
            principal: owned(request.principal_filter.as_ref()),
            host: owned(request.host_filter.as_ref()),
            operation: request.operation,
            permission: request.permission_type,
        };
        if let Some(why) = filter.invalid() {
            return r.respond(&failed(code::INVALID_REQUEST, &why));
        }
        let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
        for acl in authorizer.describe(&filter) {
            resources.entry((acl.resource_type, acl.resource_name.clone(), acl.pattern_type)).or_default().push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(acl.principal))
                    .with_host(StrBytes::from_string(acl.host))
                    .with_operation(acl.operation)
                    .with_permission_type(acl.permission),
            );
        }
        let resources = resources
            .into_iter()
            .map(|((resource_type, name, pattern_type), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(StrBytes::from_string(name))
                    .with_pattern_type(pattern_type)
                    .with_acls(acls)
            })
            .collect();
        r.respond(&DescribeAclsResponse::default().with_resources(resources))
    })
}

/// DeleteAcls: for each filter, the ACLs it matched, now deleted.
pub(crate) fn serve_delete(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: DeleteAclsRequest = r.decode()?;
        let each = |error_code, message: &str| {
            let results = request
                .filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default().with_error_code(error_code).with_error_message(text(message))
                })
                .collect();
            DeleteAclsResponse::default().with_filter_results(results)
        };
        let authorizer = &r.served.authorizer;
        if !authorizer.enabled() {
            return r.respond(&each(code::SECURITY_DISABLED, NO_AUTHORIZER));
        }
        if !r.access().cluster(op::ALTER) {
            return r
                .respond(&each(code::CLUSTER_AUTHORIZATION_FAILED, "ALTER on the cluster is needed to delete ACLs"));
        }
        let filters: Vec<AclFilter> = request
            .filters
            .iter()
            .map(|f| AclFilter {
                resource_type: f.resource_type_filter,
                resource_name: owned(f.resource_name_filter.as_ref()),
                pattern_type: f.pattern_type_filter,
                principal: owned(f.principal_filter.as_ref()),
                host: owned(f.host_filter.as_ref()),
                operation: f.operation,
                permission: f.permission_type,
            })
            .collect();
        // Invalid filters are answered INVALID_REQUEST; the valid ones delete.
        let invalid: Vec<Option<String>> = filters.iter().map(AclFilter::invalid).collect();
        let valid: Vec<AclFilter> =
            filters.iter().zip(&invalid).filter(|(_, why)| why.is_none()).map(|(f, _)| f.clone()).collect();
        let deleted = match authorizer.delete(&valid).await {
            Ok(deleted) => deleted,
            Err(e) => return r.respond(&each(code::UNKNOWN_SERVER_ERROR, &format!("storing the change: {e}"))),
        };
        let mut deleted = deleted.into_iter();
        let results = invalid
            .into_iter()
            .map(|why| match why {
                Some(why) => DeleteAclsFilterResult::default()
                    .with_error_code(code::INVALID_REQUEST)
                    .with_error_message(text(&why)),
                None => DeleteAclsFilterResult::default().with_matching_acls(
                    deleted
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|acl| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(acl.resource_type)
                                .with_resource_name(StrBytes::from_string(acl.resource_name))
                                .with_pattern_type(acl.pattern_type)
                                .with_principal(StrBytes::from_string(acl.principal))
                                .with_host(StrBytes::from_string(acl.host))
                                .with_operation(acl.operation)
                                .with_permission_type(acl.permission)
                        })
                        .collect(),
                ),
            })
            .collect();
        r.respond(&DeleteAclsResponse::default().with_filter_results(results))
    })
}
