//! Collecting a response body of bounded size into one contiguous buffer.
//!
//! The chunks an HTTP body arrives in are slices of the client's read buffers: keeping
//! them until the end pins those buffers (and whatever the allocator rounds them up to),
//! which under some allocators cost as much again as the body. Each chunk is therefore
//! copied as it comes: straight into its place when the length is declared (one copy, no
//! join), else into blocks of [`BLOCK`] bytes that are joined once at the end (a body cut
//! at the limit is never joined). Either way what is held is about the body's size.

use bytes::Bytes;

/// The block size for a body of unknown length.
pub const BLOCK: usize = 1 << 20;

/// A body being read: see the module's notes.
#[derive(Debug)]
pub struct BodyBuffer {
    /// Filled in order; all but the last are full (of their capacity).
    blocks: Vec<Vec<u8>>,
    /// Bytes pushed.
    len: usize,
}

impl BodyBuffer {
    /// A buffer for a body that declared `declared` bytes (`None`: unknown), of which at
    /// most `limit` will be pushed (the caller stops at its limit).
    pub fn new(declared: Option<u64>, limit: u64) -> Self {
        let first = match declared {
            Some(n) => n.min(limit) as usize,
            None => 0,
        };
        Self {
            blocks: if first > 0 {
                vec![Vec::with_capacity(first)]
            } else {
                Vec::new()
            },
            len: 0,
        }
    }

    /// Bytes pushed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends `data`, filling the current block before starting another.
    pub fn push(&mut self, mut data: &[u8]) {
        self.len += data.len();
        while !data.is_empty() {
            let room = self.blocks.last().map_or(0, |b| b.capacity() - b.len());
            if room == 0 {
                self.blocks.push(Vec::with_capacity(BLOCK));
                continue;
            }
            let (now, rest) = data.split_at(room.min(data.len()));
            if let Some(block) = self.blocks.last_mut() {
                block.extend_from_slice(now);
            }
            data = rest;
        }
    }

    /// The body as one buffer (no copy when it fit in one block).
    pub fn finish(mut self) -> Bytes {
        match self.blocks.len() {
            0 => Bytes::new(),
            1 => Bytes::from(self.blocks.swap_remove(0)),
            _ => {
                let mut joined = Vec::with_capacity(self.len);
                for block in self.blocks.drain(..) {
                    joined.extend_from_slice(&block);
                }
                Bytes::from(joined)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_out_in_order_in_one_buffer_whatever_the_shape() {
        let body: Vec<u8> = (0..(3 * BLOCK + 123)).map(|i| (i % 251) as u8).collect();
        // (declared length, chunk size, blocks held before finishing)
        let cases = [
            (Some(body.len() as u64), 16 * 1024, 1),
            (Some(body.len() as u64), body.len(), 1),
            (None, 16 * 1024, 4),
            (None, 7, 4),
            (None, 2 * BLOCK + 5, 4),
            // A declared length that was too short: the rest goes to new blocks.
            (Some(10), 4096, 5),
            // Declared longer than the limit: the first block is the limit's size.
            (Some(u64::MAX), 65_536, 1),
        ];
        for (declared, chunk, blocks) in cases {
            let mut buffer = BodyBuffer::new(declared, body.len() as u64);
            for piece in body.chunks(chunk) {
                buffer.push(piece);
            }
            assert_eq!(buffer.len(), body.len());
            assert_eq!(buffer.blocks.len(), blocks, "{declared:?} {chunk}");
            let held: usize = buffer.blocks.iter().map(Vec::capacity).sum();
            assert!(
                held <= body.len() + BLOCK,
                "{declared:?} {chunk}: {held} bytes held for {}",
                body.len()
            );
            assert_eq!(buffer.finish(), body, "{declared:?} {chunk}");
        }
        let empty = BodyBuffer::new(None, 100);
        assert_eq!(empty.len(), 0);
        assert_eq!(empty.finish(), Bytes::new());
        assert_eq!(BodyBuffer::new(Some(0), 100).finish(), Bytes::new());
    }
}
