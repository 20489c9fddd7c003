//! The FLV container writer and reader agree: file header and tags written piece by piece
//! (per-viewer header, shared body, trailer) parse back to what was written; the reader is
//! total on arbitrary input.

use proptest::prelude::*;
use sluice_proto::flv::{
    self, FILE_HEADER_LEN, FileHeader, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN, Tag, TagType,
};

fn arb_tag_type() -> impl Strategy<Value = TagType> {
    prop_oneof![
        Just(TagType::Audio),
        Just(TagType::Video),
        Just(TagType::Script)
    ]
}

proptest! {
    #[test]
    fn file_of_tags_round_trips(
        has_audio in any::<bool>(), has_video in any::<bool>(),
        tags in prop::collection::vec((arb_tag_type(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..500)), 0..10),
    ) {
        let mut file = Vec::new();
        flv::write_file_header(&mut file, has_audio, has_video);
        for (tag_type, timestamp, body) in &tags {
            // As a viewer writes it: its own header, the shared body, its own trailer.
            let header = flv::tag_header(*tag_type, body.len(), *timestamp).unwrap();
            file.extend_from_slice(&header);
            file.extend_from_slice(body);
            file.extend_from_slice(&flv::previous_tag_size(body.len()));
        }
        let (header, mut offset) = FileHeader::parse(&file).unwrap();
        prop_assert_eq!(offset, FILE_HEADER_LEN);
        prop_assert_eq!((header.has_audio, header.has_video, header.version), (has_audio, has_video, 1));
        for (tag_type, timestamp, body) in &tags {
            let (tag, consumed) = Tag::parse(&file[offset..]).unwrap();
            prop_assert_eq!(consumed, TAG_HEADER_LEN + body.len() + PREVIOUS_TAG_SIZE_LEN);
            prop_assert_eq!(tag.tag_type, *tag_type as u8);
            prop_assert_eq!(tag.timestamp, *timestamp);
            prop_assert_eq!(tag.stream_id, 0);
            prop_assert_eq!(tag.body, &body[..]);
            prop_assert_eq!(tag.previous_tag_size as usize, TAG_HEADER_LEN + body.len());
            offset += consumed;
        }
        prop_assert_eq!(offset, file.len());
    }

    #[test]
    fn reader_is_total(data in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok((_, consumed)) = FileHeader::parse(&data) {
            prop_assert!(consumed <= data.len());
        }
        if let Ok((tag, consumed)) = Tag::parse(&data) {
            prop_assert!(consumed <= data.len());
            prop_assert!(tag.body.len() + TAG_HEADER_LEN + PREVIOUS_TAG_SIZE_LEN == consumed);
        }
    }
}
