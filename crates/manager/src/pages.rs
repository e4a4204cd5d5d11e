//! Streamed list responses: objects in pages bounded by count and by bytes, so no page
//! approaches the gRPC message limit however large the objects are.

use swarm_api::control::ObjectPage;
use swarm_api::wire::{self, PAGE_SIZE};
use swarm_types::Object;
use tonic::{Response, Status};

/// The stream type of every list RPC.
pub(crate) type PageStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ObjectPage, Status>> + Send>>;

pub(crate) fn pages(objects: Vec<Object>) -> Response<PageStream> {
    let pages: Vec<Result<ObjectPage, Status>> = paginate(objects.iter().map(wire::to_bytes))
        .into_iter()
        .map(Ok)
        .collect();
    Response::new(Box::pin(tokio_stream::iter(pages)))
}

/// Encoded objects in pages of at most `PAGE_SIZE` objects and `PAGE_BYTES` bytes (an object
/// larger than that travels alone): no page approaches the gRPC message limit, however large
/// the objects (a service carries up to 12 specs of up to 256 KiB).
fn paginate(encoded: impl Iterator<Item = Vec<u8>>) -> Vec<ObjectPage> {
    let mut out = Vec::new();
    let mut page = ObjectPage::default();
    let mut bytes = 0usize;
    for o in encoded {
        if !page.objects.is_empty()
            && (page.objects.len() >= PAGE_SIZE || bytes + o.len() > PAGE_BYTES)
        {
            out.push(std::mem::take(&mut page));
            bytes = 0;
        }
        bytes += o.len();
        page.objects.push(o);
    }
    if !page.objects.is_empty() {
        out.push(page);
    }
    out
}

/// Byte budget of one list page (the gRPC limit is 16 MiB).
const PAGE_BYTES: usize = 4 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(pages: &[ObjectPage]) -> Vec<usize> {
        pages.iter().map(|p| p.objects.len()).collect()
    }

    #[test]
    fn pages_are_bounded_by_count_and_by_bytes() {
        let small = (0..PAGE_SIZE * 2 + 1).map(|_| vec![0u8; 10]);
        assert_eq!(sizes(&paginate(small)), vec![PAGE_SIZE, PAGE_SIZE, 1]);
        // 3 MiB objects: one per page, since two would pass the 4 MiB budget.
        let big = (0..3).map(|_| vec![0u8; 3 << 20]);
        assert_eq!(sizes(&paginate(big)), vec![1, 1, 1]);
        // An object larger than the budget still travels, alone.
        let huge = [vec![0u8; 10], vec![0u8; PAGE_BYTES + 1], vec![0u8; 10]];
        assert_eq!(sizes(&paginate(huge.into_iter())), vec![1, 1, 1]);
        assert!(paginate(std::iter::empty()).is_empty());
    }
}
