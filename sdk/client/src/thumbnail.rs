//! Client-generated image thumbnails for attachment pointers (PROTOCOL.md §14.2).
//!
//! The sender decodes its own image under hard limits and re-encodes a small preview as a
//! baseline JPEG: at most [`THUMBNAIL_MAX_DIMENSION`] pixels on the longer side and at most
//! [`MAX_THUMBNAIL_LEN`] bytes, with no metadata (EXIF, GPS and camera data are dropped; the
//! EXIF orientation is applied first, so the preview is upright). The thumbnail travels only
//! inside the encrypted pointer; the relay never sees it.
//!
//! Decoding an image takes memory proportional to its pixel count, unlike the streaming
//! attachment itself: sources over [`MAX_SOURCE_BYTES`], [`MAX_SOURCE_DIMENSION`] pixels on a
//! side or [`MAX_DECODE_BYTES`] of decoded pixels are refused with a typed error before any large
//! allocation, and the attachment is then sent without a preview.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder as _, ImageFormat, ImageReader, Limits, RgbImage};

use crate::attachments::MAX_THUMBNAIL_LEN;

/// Longest side of a thumbnail in pixels.
pub const THUMBNAIL_MAX_DIMENSION: u32 = 320;
/// Largest source file a thumbnail is made from.
pub const MAX_SOURCE_BYTES: u64 = 64 * 1024 * 1024;
/// Widest or tallest source image, in pixels.
pub const MAX_SOURCE_DIMENSION: u32 = 16_384;
/// Most memory the decoder may allocate for the source's pixels (a 48-megapixel RGB photo
/// needs about 144 MiB).
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
/// JPEG qualities tried in order until the thumbnail fits [`MAX_THUMBNAIL_LEN`].
const QUALITIES: [u8; 4] = [75, 60, 45, 30];
/// Smallest longer side tried before giving up.
const MIN_DIMENSION: u32 = 40;

/// The content types a thumbnail is made for (the decoders compiled in).
pub const THUMBNAIL_SOURCE_TYPES: [&str; 4] =
    ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Why no thumbnail could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbnailError {
    /// The content type is not one of [`THUMBNAIL_SOURCE_TYPES`].
    #[error("no thumbnails for content type {0:?}")]
    UnsupportedType(String),
    /// The source is larger than [`MAX_SOURCE_BYTES`].
    #[error("source is {0} bytes; thumbnails are made from at most {MAX_SOURCE_BYTES}")]
    SourceTooLarge(u64),
    /// The image's dimensions or decoded size are over the limits.
    #[error("image exceeds the decoding limits")]
    Limits,
    /// The bytes are not a decodable image of a supported format.
    #[error("not a decodable image: {0}")]
    Decode(String),
    /// Even the smallest, lowest-quality preview is over [`MAX_THUMBNAIL_LEN`].
    #[error("no preview fits the thumbnail limit")]
    TooLarge,
    /// Reading the source failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<image::ImageError> for ThumbnailError {
    fn from(err: image::ImageError) -> Self {
        match err {
            image::ImageError::Limits(_) => Self::Limits,
            image::ImageError::IoError(e) => Self::Io(e),
            other => Self::Decode(other.to_string()),
        }
    }
}

/// A JPEG preview and its dimensions.
#[derive(Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// Baseline JPEG, at most [`MAX_THUMBNAIL_LEN`] bytes.
    pub jpeg: Vec<u8>,
    /// Preview width in pixels.
    pub width: u32,
    /// Preview height in pixels.
    pub height: u32,
}

impl std::fmt::Debug for Thumbnail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thumbnail")
            .field("len", &self.jpeg.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Whether [`thumbnail_from_file`] handles `content_type` (parameters such as `; q=1` ignored,
/// case-insensitive).
#[must_use]
pub fn supports(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    THUMBNAIL_SOURCE_TYPES.contains(&essence.as_str())
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_DIMENSION);
    limits.max_image_height = Some(MAX_SOURCE_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Makes a thumbnail of the image file at `path` whose declared type is `content_type`. The
/// format is detected from the bytes, not trusted from the type or the file name.
///
/// Blocking and CPU-bound: call it from a blocking thread.
///
/// # Errors
/// [`ThumbnailError`]: unsupported type, over a limit, undecodable, or I/O.
pub fn thumbnail_from_file(path: &Path, content_type: &str) -> Result<Thumbnail, ThumbnailError> {
    if !supports(content_type) {
        return Err(ThumbnailError::UnsupportedType(content_type.to_owned()));
    }
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_SOURCE_BYTES {
        return Err(ThumbnailError::SourceTooLarge(len));
    }
    thumbnail_from_reader(std::io::BufReader::new(file))
}

/// Makes a thumbnail of the encoded image in `bytes` (format detected from the bytes).
///
/// # Errors
/// As [`thumbnail_from_file`].
pub fn thumbnail_from_bytes(bytes: &[u8]) -> Result<Thumbnail, ThumbnailError> {
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(ThumbnailError::SourceTooLarge(bytes.len() as u64));
    }
    thumbnail_from_reader(Cursor::new(bytes))
}

fn thumbnail_from_reader<R: BufRead + Seek>(source: R) -> Result<Thumbnail, ThumbnailError> {
    let mut reader = ImageReader::new(source).with_guessed_format()?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP) => {}
        _ => {
            return Err(ThumbnailError::Decode(
                "not a JPEG, PNG, GIF or WebP image".to_owned(),
            ));
        }
    }
    reader.limits(limits());
    let mut decoder = reader.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    encode_preview(&image)
}

/// Flattens onto white (transparent pixels would otherwise turn black in a JPEG).
fn flatten(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(src[3]);
        for c in 0..3 {
            let v = (u16::from(src[c]) * a + 255 * (255 - a) + 127) / 255;
            dst[c] = u8::try_from(v).unwrap_or(u8::MAX);
        }
    }
    out
}

fn encode_preview(image: &DynamicImage) -> Result<Thumbnail, ThumbnailError> {
    let mut side = THUMBNAIL_MAX_DIMENSION;
    while side >= MIN_DIMENSION {
        let small = if image.width() <= side && image.height() <= side {
            flatten(image)
        } else {
            flatten(&image.thumbnail(side, side))
        };
        for quality in QUALITIES {
            let mut jpeg = Vec::new();
            JpegEncoder::new_with_quality(&mut jpeg, quality).encode_image(&small)?;
            if jpeg.len() <= MAX_THUMBNAIL_LEN {
                return Ok(Thumbnail {
                    jpeg,
                    width: small.width(),
                    height: small.height(),
                });
            }
        }
        side /= 2;
    }
    Err(ThumbnailError::TooLarge)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use image::{ImageEncoder as _, Rgb, Rgba, RgbaImage};

    fn png(image: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    fn gradient(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        }))
    }

    fn decode_jpeg(t: &Thumbnail) -> DynamicImage {
        let img = image::load_from_memory_with_format(&t.jpeg, ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (t.width, t.height));
        img
    }

    #[test]
    fn landscape_png_becomes_a_small_jpeg_with_the_aspect_ratio() {
        let t = thumbnail_from_bytes(&png(&gradient(1600, 1200))).unwrap();
        assert_eq!((t.width, t.height), (320, 240));
        assert!(t.jpeg.len() <= MAX_THUMBNAIL_LEN);
        assert_eq!(&t.jpeg[..2], &[0xFF, 0xD8]);
        decode_jpeg(&t);
        let portrait = thumbnail_from_bytes(&png(&gradient(300, 900))).unwrap();
        assert_eq!((portrait.width, portrait.height), (107, 320));
    }

    #[test]
    fn small_images_are_not_enlarged() {
        let t = thumbnail_from_bytes(&png(&gradient(50, 20))).unwrap();
        assert_eq!((t.width, t.height), (50, 20));
    }

    #[test]
    fn noise_still_fits_the_limit() {
        // Random pixels defeat JPEG compression: the quality and size steps must kick in.
        let mut state = 0x1234_5678_u32;
        let noise = RgbImage::from_fn(2000, 2000, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let b = state.to_le_bytes();
            Rgb([b[0], b[1], b[2]])
        });
        let t = thumbnail_from_bytes(&png(&DynamicImage::ImageRgb8(noise))).unwrap();
        assert!(t.jpeg.len() <= MAX_THUMBNAIL_LEN, "{}", t.jpeg.len());
        assert!(t.width <= THUMBNAIL_MAX_DIMENSION);
        decode_jpeg(&t);
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let clear = RgbaImage::from_pixel(64, 64, Rgba([0, 0, 0, 0]));
        let t = thumbnail_from_bytes(&png(&DynamicImage::ImageRgba8(clear))).unwrap();
        let px = decode_jpeg(&t).to_rgb8();
        assert!(px.pixels().all(|p| p.0.iter().all(|&c| c > 245)));
    }

    #[test]
    fn jpeg_gif_and_webp_sources_decode() {
        let img = gradient(400, 300);
        for format in [ImageFormat::Jpeg, ImageFormat::Gif, ImageFormat::WebP] {
            let mut bytes = Vec::new();
            img.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
            let t = thumbnail_from_bytes(&bytes).unwrap();
            assert_eq!((t.width, t.height), (320, 240), "{format:?}");
        }
    }

    #[test]
    fn garbage_and_truncated_images_are_typed_errors() {
        assert!(matches!(
            thumbnail_from_bytes(b"definitely not an image"),
            Err(ThumbnailError::Decode(_))
        ));
        let full = png(&gradient(200, 200));
        for cut in [8, 40, full.len() / 2] {
            let err = thumbnail_from_bytes(&full[..cut]).unwrap_err();
            assert!(
                matches!(err, ThumbnailError::Decode(_) | ThumbnailError::Io(_)),
                "{cut}: {err:?}"
            );
        }
        // A BMP is a valid image, but not a format we decode.
        let mut bmp = Vec::new();
        gradient(8, 8)
            .write_to(&mut Cursor::new(&mut bmp), ImageFormat::Bmp)
            .ok();
        if !bmp.is_empty() {
            assert!(thumbnail_from_bytes(&bmp).is_err());
        }
    }

    #[test]
    fn oversized_dimensions_are_refused_before_decoding() {
        // A valid 1×1 PNG whose header is rewritten to claim 100000×100000 pixels: the limit
        // check must refuse it from the header alone.
        let mut small = Vec::new();
        image::codecs::png::PngEncoder::new(&mut small)
            .write_image(&[0, 0, 0], 1, 1, image::ExtendedColorType::Rgb8)
            .unwrap();
        let mut bomb = small.clone();
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            thumbnail_from_bytes(&bomb),
            Err(ThumbnailError::Limits)
        ));
    }

    #[test]
    fn only_image_types_are_attempted() {
        assert!(supports("image/png"));
        assert!(supports("IMAGE/JPEG; charset=binary"));
        assert!(!supports("application/pdf"));
        assert!(!supports("image/svg+xml"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pdf");
        std::fs::write(&path, b"%PDF").unwrap();
        assert!(matches!(
            thumbnail_from_file(&path, "application/pdf"),
            Err(ThumbnailError::UnsupportedType(_))
        ));
        // The declared type only gates the attempt: the bytes decide the format.
        let img = dir.path().join("photo.bin");
        std::fs::write(&img, png(&gradient(64, 64))).unwrap();
        assert!(thumbnail_from_file(&img, "image/jpeg").is_ok());
    }

    /// CRC-32 (ISO-HDLC), for rewriting a PNG chunk in a test.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
