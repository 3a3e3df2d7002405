//! Real encoders and players: ffmpeg publishing a small generated test pattern (H.264 + AAC,
//! 160×90 at 15 fps, so that several fit on two cores) in real time, ffmpeg playing a stream
//! into the null muxer, and the outcome of either as its exit status and stderr.

use std::{process::Stdio, time::Duration};

use tokio::{
    process::{Child, Command},
    time::{Instant, timeout},
};

/// ffmpeg publishing to `url` for `seconds` (`-t`), then exiting 0. A refused or dropped
/// publish makes it exit non-zero with the server's description on stderr.
pub fn publish(url: &str, seconds: u32) -> Child {
    streamfleet_testkit::require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=15"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "32k", "-t", &seconds.to_string(), "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn ffmpeg: {e}"))
}

/// ffmpeg playing `url` into the null muxer for at most `seconds` of media. It exits when the
/// server ends the stream (status or close), which is what the tests watch for.
pub fn play(url: &str, seconds: u32) -> Child {
    streamfleet_testkit::require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-rw_timeout", "15000000"])
        .args(["-i", url, "-t", &seconds.to_string(), "-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn ffmpeg: {e}"))
}

/// How an ffmpeg process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub success: bool,
    pub stderr: String,
    pub at: Instant,
}

/// Waits for `child` to exit; `None` if it is still running after `limit` (it is then killed
/// when dropped).
pub async fn wait_exit(child: Child, limit: Duration) -> Option<Exit> {
    match timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => Some(Exit {
            success: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            at: Instant::now(),
        }),
        Ok(Err(e)) => panic!("waiting for ffmpeg: {e}"),
        Err(_) => None,
    }
}

/// Whether the process is still running.
pub fn running(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

/// `ffprobe` on `url`: the codec names of its streams (e.g. `["h264", "aac"]`) and the flags of
/// the first video packet it reads (`K` marks a keyframe), within `limit`.
pub async fn probe(url: &str, limit: Duration) -> Result<(Vec<String>, String), String> {
    streamfleet_testkit::require_tool("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-hide_banner", "-v", "error", "-rw_timeout", "10000000"])
        .args(["-show_entries", "stream=codec_name:packet=codec_type,flags"])
        .args(["-read_intervals", "%+#30", "-of", "default=noprint_wrappers=1"])
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = timeout(limit, out)
        .await
        .map_err(|_| format!("ffprobe {url} did not finish within {limit:?}"))?
        .map_err(|e| format!("spawn ffprobe: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("ffprobe {url} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let codecs = text.lines().filter_map(|l| l.strip_prefix("codec_name=")).map(String::from).collect();
    let mut kind = "";
    let mut flags = String::new();
    for line in text.lines() {
        if let Some(k) = line.strip_prefix("codec_type=") {
            kind = k;
        } else if let Some(f) = line.strip_prefix("flags=")
            && kind == "video"
        {
            flags = f.to_string();
            break;
        }
    }
    Ok((codecs, flags))
}
