//! Streamed list responses: objects in pages bounded by count and by bytes, so no page
//! approaches the gRPC message limit however large the objects are.

use swarm_api::control::ObjectPage;
use swarm_api::wire::{self, PAGE_SIZE};
use swarm_types::Object;
use tonic::{Response, Status};

/// The stream type of every list RPC.
pub(crate) type PageStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ObjectPage, Status>> + Send>>;

/// Streams `objects` in pages, encoding each page only when the client is ready for it: a
/// list of 100,000 tasks held every encoded object (and a `Vec<Object>` of 1.3 KB per
/// element: the enum is as large as a `Service`) at once — the leader's largest allocation
/// while a benchmark polled the tasks of a 100k-task service (issue 17, heap profile).
pub(crate) fn pages<I>(objects: I) -> Response<PageStream>
where
    I: IntoIterator<Item = Object>,
    I::IntoIter: Send + 'static,
{
    let encoded = objects.into_iter().map(|o| wire::to_bytes(&o));
    Response::new(Box::pin(tokio_stream::iter(Paginate::new(encoded).map(Ok))))
}

/// Encoded objects in pages of at most `PAGE_SIZE` objects and `PAGE_BYTES` bytes (an object
/// larger than that travels alone): no page approaches the gRPC message limit, however large
/// the objects (a service carries up to 12 specs of up to 256 KiB). Lazy: one page at a time.
struct Paginate<I: Iterator<Item = Vec<u8>>> {
    encoded: std::iter::Peekable<I>,
}

impl<I: Iterator<Item = Vec<u8>>> Paginate<I> {
    fn new(encoded: I) -> Self {
        Paginate {
            encoded: encoded.peekable(),
        }
    }
}

impl<I: Iterator<Item = Vec<u8>>> Iterator for Paginate<I> {
    type Item = ObjectPage;

    fn next(&mut self) -> Option<ObjectPage> {
        let mut page = ObjectPage::default();
        let mut bytes = 0usize;
        while let Some(o) = self.encoded.peek() {
            if !page.objects.is_empty()
                && (page.objects.len() >= PAGE_SIZE || bytes + o.len() > PAGE_BYTES)
            {
                break;
            }
            let o = self.encoded.next().expect("peeked");
            bytes += o.len();
            page.objects.push(o);
        }
        (!page.objects.is_empty()).then_some(page)
    }
}

#[cfg(test)]
fn paginate(encoded: impl Iterator<Item = Vec<u8>>) -> Vec<ObjectPage> {
    Paginate::new(encoded).collect()
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

    #[test]
    fn a_page_is_encoded_only_when_it_is_taken() {
        let encoded = std::cell::Cell::new(0usize);
        let objects = (0..PAGE_SIZE * 10).map(|_| {
            encoded.set(encoded.get() + 1);
            vec![0u8; 10]
        });
        let mut pages = Paginate::new(objects);
        assert_eq!(
            encoded.get(),
            0,
            "nothing before the first page is asked for"
        );
        assert_eq!(pages.next().map(|p| p.objects.len()), Some(PAGE_SIZE));
        // The page, plus the one object looked at to know the page was full.
        assert_eq!(encoded.get(), PAGE_SIZE + 1);
    }
}
