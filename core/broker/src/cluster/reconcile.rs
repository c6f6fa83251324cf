//! A broker's log follows the image ([`freshet_cluster::replication::reconcile`]), and its
//! replicas' roles with it.

use std::sync::Arc;

use freshet_cluster::replication::reconcile;
use freshet_cluster::MetadataImage;
use freshet_log::Log;

use super::ClusterNode;

pub(super) async fn run(node: Arc<ClusterNode>, log: Log) {
    let me = node.config.node_id;
    let mut images = node.images();
    let mut previous: Option<Arc<MetadataImage>> = None;
    loop {
        let image = images.borrow_and_update().clone();
        if image.offset > 0 {
            reconcile(&log, me, previous.as_deref(), &image).await;
            if let Some(replicas) = &node.replicas {
                replicas.on_image(&image);
            }
            previous = Some(image);
        }
        if images.changed().await.is_err() {
            return;
        }
    }
}
