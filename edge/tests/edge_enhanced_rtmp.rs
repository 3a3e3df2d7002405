//! Enhanced RTMP with a real encoder: a recent ffmpeg (the PyPI package `imageio-ffmpeg`, which
//! `scripts/test` installs in `.venv`; Debian's ffmpeg 5.1 cannot publish these) sends H.264 +
//! Opus, HEVC + Opus and AV1 + AAC. A viewer that joins after the start records with `-c copy`,
//! and the recording must decode: it only can if the edge replayed every configuration packet
//! (for Opus: the OpusHead sequence start *and* the multichannel config) to the late joiner.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use common::{Edge, TempFile, finish};
use tokio::process::{Child, Command};

/// The recent static ffmpeg: `$STREAMFLEET_MODERN_FFMPEG`, or the one `imageio-ffmpeg` ships in
/// the workspace's `.venv`. Missing is a setup error (scripts/test installs it), not a skip.
fn modern_ffmpeg() -> PathBuf {
    if let Some(p) = std::env::var_os("STREAMFLEET_MODERN_FFMPEG") {
        return PathBuf::from(p);
    }
    let venv_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    let found = std::fs::read_dir(&venv_lib).ok().and_then(|pythons| {
        pythons.flatten().find_map(|py| {
            let bins = py.path().join("site-packages/imageio_ffmpeg/binaries");
            std::fs::read_dir(bins)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ffmpeg-")))
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no recent ffmpeg for Enhanced RTMP: run scripts/test (it installs imageio-ffmpeg in .venv), \
             or set STREAMFLEET_MODERN_FFMPEG"
        )
    })
}

fn ffmpeg(args: &[&str]) -> Child {
    Command::new(modern_ffmpeg())
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the recent ffmpeg: {e}"))
}

/// Publishes a 160×96 15 fps test pattern with a 440 Hz tone for 30 s.
fn publish(url: &str, video: &[&str], audio: &[&str]) -> Child {
    let mut args = vec!["-re", "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=15"];
    args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    args.extend(video);
    args.extend(["-g", "15", "-pix_fmt", "yuv420p"]);
    args.extend(audio);
    args.extend(["-t", "30", "-f", "flv", url]);
    ffmpeg(&args)
}

/// Records 2 s of `url` with `-c copy` into `out`; then decodes the recording completely and
/// returns what the decoder says its streams are.
async fn record_late_and_decode(url: &str, out: &Path) -> String {
    let out_s = out.display().to_string();
    let rec = ffmpeg(&["-rw_timeout", "15000000", "-i", url, "-t", "2", "-c", "copy", "-y", &out_s]);
    let (ok, stderr) = finish(rec, Duration::from_secs(30)).await;
    assert!(ok, "recording {url} with -c copy failed: {stderr}");
    let decode = ffmpeg(&["-i", &out_s, "-f", "null", "-"]);
    let (ok, stderr) = finish(decode, Duration::from_secs(30)).await;
    assert!(ok && stderr.trim().is_empty(), "the recording of {url} does not decode cleanly: {stderr}");
    let probe = Command::new(modern_ffmpeg())
        .args(["-hide_banner", "-nostdin", "-i", &out_s])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("probe the recording: {e}"));
    String::from_utf8_lossy(&probe.stderr).lines().filter(|l| l.contains("Stream #")).collect::<Vec<_>>().join("\n")
}

/// One encoder configuration: stream `name` (key `<name>-key`), ffmpeg's codec flags, and the
/// codec names the edge and the recording must report.
struct Case {
    name: &'static str,
    video: &'static [&'static str],
    audio: &'static [&'static str],
    codecs: [&'static str; 2],
}

/// Streams `<name>` published with key `<name>-key`.
fn manifests(names: &[&str]) -> String {
    let one = |n: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {n}-key}}\nstringData: {{publishKey: {n}-key}}\n---\n\
             apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {{name: {n}}}\n\
             spec:\n  publishKeySecretRef: {{name: {n}-key, key: publishKey}}\n"
        )
    };
    names.iter().map(|n| one(n)).collect::<Vec<_>>().join("---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_viewers_of_opus_hevc_and_av1_get_every_decoder_configuration() {
    let streams = TempFile::new("ertmp.yaml", &manifests(&["opus", "hevc", "av1"]));
    let edge = Edge::start_with(vec!["--streams".into(), streams.0.display().to_string()]).await;
    let cases = [
        Case {
            name: "opus",
            video: &["-c:v", "libx264", "-preset", "ultrafast"],
            audio: &["-c:a", "libopus", "-b:a", "32k"],
            codecs: ["h264", "opus"],
        },
        Case {
            name: "hevc",
            video: &["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
            audio: &["-c:a", "libopus", "-b:a", "32k"],
            codecs: ["hevc", "opus"],
        },
        Case {
            name: "av1",
            video: &["-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "lp=1"],
            audio: &["-c:a", "aac", "-b:a", "32k"],
            codecs: ["av1", "aac"],
        },
    ];
    let encoders: Vec<Child> =
        cases.iter().map(|c| publish(&edge.url(&format!("{}-key", c.name)), c.video, c.audio)).collect();
    // Late: the configuration packets went out long before these viewers join.
    for c in &cases {
        edge.wait_live(c.name, 60, Duration::from_secs(40)).await;
    }
    for Case { name, codecs: [video, audio], .. } in &cases {
        let stream = edge.stream(name).await.expect("stream listed");
        assert_eq!(stream["video_codec"], *video, "{stream}");
        assert_eq!(stream["audio_codec"], *audio, "{stream}");
        // The resolution comes from each codec's own configuration record (SPS, sequence header).
        let v = &stream["media"]["video"];
        assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(160), Some(96)), "{name}: {stream}");
        // FLV is what broke (`Assertion par->extradata_size failed` for Opus); MKV needs the
        // headers too.
        for ext in ["flv", "mkv"] {
            let file = TempFile::new(&format!("late-{name}.{ext}"), "");
            let streams = record_late_and_decode(&edge.url(name), &file.0).await;
            assert!(streams.contains(&format!("Video: {video}")), "{name}.{ext}: {streams}");
            assert!(streams.contains(&format!("Audio: {audio}")), "{name}.{ext}: {streams}");
        }
    }
    drop(encoders);
}
