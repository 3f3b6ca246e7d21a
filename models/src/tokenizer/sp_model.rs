//! Reads the few fields of a SentencePiece `ModelProto` that encoding needs.
//!
//! The protobuf wire format is parsed directly (varints and length-delimited fields);
//! unknown fields are skipped, malformed input gives an error, never a panic.

/// The kind of a vocabulary entry (`ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// An ordinary piece produced by the segmentation model.
    Normal,
    /// The unknown-token placeholder.
    Unknown,
    /// A control token (never produced from text).
    Control,
    /// A user-defined symbol, always kept whole.
    UserDefined,
    /// A piece that is never produced.
    Unused,
    /// One of the 256 `<0xNN>` byte-fallback pieces.
    Byte,
}

/// One vocabulary entry.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The piece text (`▁` stands for a space).
    pub text: String,
    /// Its score (log-probability for unigram, merge priority for BPE).
    pub score: f32,
    /// Its kind.
    pub kind: PieceKind,
}

/// The segmentation algorithm of the model (`TrainerSpec.model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// Unigram language model (Viterbi segmentation).
    Unigram,
    /// Byte-pair encoding driven by piece scores.
    Bpe,
}

/// The normalizer settings (`NormalizerSpec`).
#[derive(Debug, Clone)]
pub struct NormalizerSpec {
    /// The compiled character map (empty for the identity normalizer).
    pub charsmap: Vec<u8>,
    /// Prepend `▁` to non-empty input.
    pub add_dummy_prefix: bool,
    /// Drop leading/trailing spaces and collapse runs of spaces.
    pub remove_extra_whitespaces: bool,
    /// Write spaces as `▁`.
    pub escape_whitespaces: bool,
}

/// The parts of a SentencePiece model file the tokenizers use.
#[derive(Debug, Clone)]
pub struct SpModel {
    /// The vocabulary in id order.
    pub pieces: Vec<Piece>,
    /// The segmentation algorithm.
    pub model_type: ModelType,
    /// Unknown characters become their UTF-8 bytes.
    pub byte_fallback: bool,
    /// The normalizer settings.
    pub normalizer: NormalizerSpec,
}

/// A cursor over protobuf wire data.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| format!("field of {n} bytes runs past the end of the data"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Reads the next field: its number and value.
    fn field(&mut self) -> Result<(u32, Value<'a>), String> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.bytes(8)?;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                Value::Bytes(self.bytes(len)?)
            }
            5 => Value::Fixed32(self.bytes(4)?),
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok((number, value))
    }
}

/// A field value in wire form.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(&'a [u8]),
}

impl<'a> Value<'a> {
    fn as_bytes(&self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(format!("{what}: expected a length-delimited field")),
        }
    }
    fn as_varint(&self, what: &str) -> Result<u64, String> {
        match self {
            Value::Varint(v) => Ok(*v),
            _ => Err(format!("{what}: expected a varint field")),
        }
    }
    fn as_f32(&self, what: &str) -> Result<f32, String> {
        match self {
            Value::Fixed32(b) => Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => Err(format!("{what}: expected a 32-bit field")),
        }
    }
}

fn parse_piece(data: &[u8]) -> Result<Piece, String> {
    let mut r = Reader::new(data);
    let mut piece = Piece { text: String::new(), score: 0.0, kind: PieceKind::Normal };
    while !r.done() {
        let (number, value) = r.field()?;
        match number {
            1 => {
                piece.text = String::from_utf8(value.as_bytes("piece")?.to_vec())
                    .map_err(|_| "a piece is not valid UTF-8")?
            }
            2 => piece.score = value.as_f32("score")?,
            3 => {
                piece.kind = match value.as_varint("type")? {
                    1 => PieceKind::Normal,
                    2 => PieceKind::Unknown,
                    3 => PieceKind::Control,
                    4 => PieceKind::UserDefined,
                    5 => PieceKind::Unused,
                    6 => PieceKind::Byte,
                    other => return Err(format!("unknown piece type {other}")),
                }
            }
            _ => {}
        }
    }
    Ok(piece)
}

/// Parses a serialized `ModelProto`; the error says what is wrong.
pub fn parse(data: &[u8]) -> Result<SpModel, String> {
    let mut r = Reader::new(data);
    let mut pieces = Vec::new();
    let mut model_type = ModelType::Unigram;
    let mut byte_fallback = false;
    let mut normalizer = NormalizerSpec {
        charsmap: Vec::new(),
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
        escape_whitespaces: true,
    };
    let mut saw_trainer = false;
    while !r.done() {
        let (number, value) = r.field()?;
        match number {
            1 => pieces.push(parse_piece(value.as_bytes("pieces")?)?),
            2 => {
                saw_trainer = true;
                let mut t = Reader::new(value.as_bytes("trainer_spec")?);
                while !t.done() {
                    let (n, v) = t.field()?;
                    match n {
                        3 => {
                            model_type = match v.as_varint("model_type")? {
                                1 => ModelType::Unigram,
                                2 => ModelType::Bpe,
                                other => return Err(format!("unsupported model type {other} (only unigram and BPE)")),
                            }
                        }
                        35 => byte_fallback = v.as_varint("byte_fallback")? != 0,
                        _ => {}
                    }
                }
            }
            3 => {
                let mut s = Reader::new(value.as_bytes("normalizer_spec")?);
                while !s.done() {
                    let (n, v) = s.field()?;
                    match n {
                        2 => normalizer.charsmap = v.as_bytes("precompiled_charsmap")?.to_vec(),
                        3 => normalizer.add_dummy_prefix = v.as_varint("add_dummy_prefix")? != 0,
                        4 => normalizer.remove_extra_whitespaces = v.as_varint("remove_extra_whitespaces")? != 0,
                        5 => normalizer.escape_whitespaces = v.as_varint("escape_whitespaces")? != 0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if pieces.is_empty() {
        return Err("the model has no vocabulary".into());
    }
    if !saw_trainer {
        return Err("the model has no trainer spec".into());
    }
    Ok(SpModel { pieces, model_type, byte_fallback, normalizer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u32, wire: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) as u8) | wire];
        if wire == 2 {
            out.push(payload.len() as u8);
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn parses_a_tiny_model_and_rejects_truncation() {
        let mut piece = field(1, 2, "▁a".as_bytes());
        piece.extend(field(2, 5, &(-1.5f32).to_le_bytes()));
        let mut model = field(1, 2, &piece);
        model.extend(field(2, 2, &[3 << 3, 2]));
        let parsed = parse(&model).unwrap();
        assert_eq!(parsed.pieces[0].text, "▁a");
        assert_eq!(parsed.pieces[0].score, -1.5);
        assert_eq!(parsed.model_type, ModelType::Bpe);
        for cut in 1..model.len() {
            assert!(parse(&model[..cut]).is_err(), "cut at {cut} accepted");
        }
    }
}
