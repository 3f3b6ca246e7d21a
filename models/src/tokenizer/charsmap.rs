//! SentencePiece's precompiled character map: a Darts double-array trie over UTF-8 bytes
//! whose values point into a blob of NUL-terminated replacement strings.
//!
//! Lookup is the longest-prefix rule of SentencePiece's `Normalizer::NormalizePrefix`.

/// A parsed character map.
#[derive(Debug, Clone, Default)]
pub struct CharsMap {
    units: Vec<u32>,
    normalized: Vec<u8>,
}

impl CharsMap {
    /// Parses the `precompiled_charsmap` bytes (`u32` trie size, trie units, string blob).
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        if data.is_empty() {
            return Ok(Self::default());
        }
        let head: [u8; 4] = data
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or("character map shorter than its header")?;
        let trie_size = u32::from_le_bytes(head) as usize;
        let rest = &data[4..];
        if trie_size > rest.len() || !trie_size.is_multiple_of(4) || trie_size == 0 {
            return Err(format!("character map trie of {trie_size} bytes does not fit the {} bytes stored", rest.len()));
        }
        let units = rest[..trie_size]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Self { units, normalized: rest[trie_size..].to_vec() })
    }

    /// The longest rule matching a prefix of `input`: (bytes consumed, replacement).
    pub fn longest_prefix(&self, input: &[u8]) -> Option<(usize, &str)> {
        let unit = |pos: usize| self.units.get(pos).copied();
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let mut node = offset(unit(0)?);
        let mut best: Option<(usize, usize)> = None;
        for (i, &byte) in input.iter().enumerate() {
            node ^= byte as usize;
            let u = unit(node)?;
            if (u & ((1 << 31) | 0xff)) as usize != byte as usize {
                break;
            }
            node ^= offset(u);
            if (u >> 8) & 1 == 1 {
                let value = (unit(node)? & 0x7fff_ffff) as usize;
                best = Some((i + 1, value));
            }
        }
        let (len, value) = best?;
        let tail = self.normalized.get(value..)?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let text = std::str::from_utf8(&tail[..end]).ok()?;
        Some((len, text))
    }
}
