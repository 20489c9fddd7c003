//! `hls_path`: segments and playlists are also written to disk (SRS's layout under the
//! directory), byte for byte what HTTP serves; a directory that cannot be written is logged
//! and delivery from memory goes on.

mod common;

use std::time::Duration;

use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir, http_client};

fn wait_for_segments(server: &Server, io: Io) -> String {
    let mut playlist = String::new();
    let ready = common::wait_until(Duration::from_secs(15), || {
        match http_client::get(server.http_port, "/live/disk.m3u8") {
            Ok(r) if r.status == 200 => {
                playlist = String::from_utf8_lossy(&r.body).into_owned();
                playlist.contains("disk-2.ts")
            }
            _ => false,
        }
    });
    assert!(ready, "[{io}] three segments listed: {playlist}");
    playlist
}

#[test]
fn segments_and_playlist_are_written_to_hls_path() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let dir = TempDir::new("hls-path");
        let root = dir.join("hls");
        let config = ServerConfig::new()
            .hls("hls_fragment", 1)
            .hls("hls_path", common::toml_string(&root.display().to_string()));
        let server = Server::start(io, &config);
        let _publisher =
            FfmpegPublisher::start(&server, "disk", PublishOpts::default().seconds(8.0));
        wait_for_segments(&server, io);
        for seq in 0..2 {
            let served = http_client::get(server.http_port, &format!("/live/disk-{seq}.ts"))
                .expect("GET segment");
            assert_eq!(served.status, 200, "[{io}] segment {seq}");
            let file = root.join(format!("live/disk-{seq}.ts"));
            let mut on_disk = Vec::new();
            // The writer thread may be a moment behind the playlist.
            common::wait_until(Duration::from_secs(3), || {
                on_disk = std::fs::read(&file).unwrap_or_default();
                on_disk.len() == served.body.len()
            });
            assert_eq!(
                on_disk,
                served.body,
                "[{io}] {} equals what HTTP serves",
                file.display()
            );
        }
        let m3u8 = std::fs::read_to_string(root.join("live/disk.m3u8")).expect("playlist on disk");
        assert!(
            m3u8.starts_with("#EXTM3U") && m3u8.contains("disk-0.ts"),
            "[{io}] {m3u8}"
        );
        server.assert_no_panic();
    });
}

#[test]
fn unwritable_hls_path_is_logged_and_memory_delivery_goes_on() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let dir = TempDir::new("hls-path-bad");
        // A regular file where a directory should be: every write fails.
        let blocker = dir.join("not-a-dir");
        std::fs::write(&blocker, b"x").unwrap();
        let config = ServerConfig::new().hls("hls_fragment", 1).hls(
            "hls_path",
            common::toml_string(&blocker.join("hls").display().to_string()),
        );
        let server = Server::start(io, &config);
        let _publisher =
            FfmpegPublisher::start(&server, "disk", PublishOpts::default().seconds(8.0));
        wait_for_segments(&server, io);
        let segment = http_client::get(server.http_port, "/live/disk-1.ts").expect("GET");
        assert_eq!(segment.status, 200, "[{io}] served from memory");
        assert!(
            segment.body.len() > 1000 && segment.body[0] == 0x47,
            "[{io}] MPEG-TS"
        );
        server.expect_log(
            "the failed write logged",
            |l| l.is("hls: cannot write file; serving from memory continues"),
            Duration::from_secs(5),
        );
        server.assert_no_panic();
    });
}
