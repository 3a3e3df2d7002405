//! Generates the benchmark's test media with ffmpeg once and caches it: 720p30 H.264 + AAC, a
//! constant bitrate with filler (so "3 Mbit/s" really is 3 Mbit/s on the wire), a keyframe every
//! `gop` seconds and no B-frames. Moving noise on a test pattern keeps the encoder honest.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::error::BenchError;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Video bitrate in kbit/s (audio adds 128 kbit/s).
    pub video_kbps: u32,
    pub gop_seconds: u32,
    pub seconds: u32,
}

impl GenerateSpec {
    /// The file name the spec is cached under; changing any parameter makes a new file.
    pub fn file_name(&self) -> String {
        format!(
            "{}x{}-{}fps-{}k-gop{}s-{}s.flv",
            self.width, self.height, self.fps, self.video_kbps, self.gop_seconds, self.seconds
        )
    }

    /// ffmpeg arguments that write the media to `out`.
    pub fn ffmpeg_args(&self, out: &Path) -> Vec<String> {
        let gop = (self.fps * self.gop_seconds).max(1);
        let rate = format!("{}k", self.video_kbps);
        let mut args: Vec<String> = vec!["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i"]
            .into_iter()
            .map(String::from)
            .collect();
        args.push(format!("testsrc2=size={}x{}:rate={},noise=alls=12:allf=t", self.width, self.height, self.fps));
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"].map(String::from));
        args.extend(["-t".to_string(), self.seconds.to_string()]);
        args.extend(
            ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p", "-bf", "0"]
                .map(String::from),
        );
        args.extend(["-b:v", &rate, "-minrate", &rate, "-maxrate", &rate, "-bufsize", &rate].map(String::from));
        args.extend(["-x264-params".to_string(), "nal-hrd=cbr:force-cfr=1".to_string()]);
        args.extend(["-g".to_string(), gop.to_string(), "-keyint_min".to_string(), gop.to_string()]);
        args.extend(["-sc_threshold", "0", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "flv"].map(String::from));
        args.push(out.display().to_string());
        args
    }
}

/// Returns the cached file for `spec` under `cache_dir`, running ffmpeg first if it is missing.
/// The file is written under a temporary name and renamed, so an interrupted run never leaves a
/// half-written file in the cache.
pub async fn cached(spec: &GenerateSpec, cache_dir: &Path) -> Result<PathBuf, BenchError> {
    let path = cache_dir.join(spec.file_name());
    if path.is_file() {
        return Ok(path);
    }
    tokio::fs::create_dir_all(cache_dir)
        .await
        .map_err(|source| BenchError::File { path: cache_dir.to_path_buf(), source })?;
    let tmp = cache_dir.join(format!(".{}.{}.tmp.flv", spec.file_name(), std::process::id()));
    tracing::info!(file = %path.display(), "generating benchmark media with ffmpeg (once; cached)");
    let output = tokio::process::Command::new("ffmpeg")
        .args(spec.ffmpeg_args(&tmp))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| BenchError::Ffmpeg { path: path.clone(), message: format!("cannot run ffmpeg: {e}") })?;
    if !output.status.success() {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(BenchError::Ffmpeg {
            path,
            message: format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()),
        });
    }
    tokio::fs::rename(&tmp, &path).await.map_err(|source| BenchError::File { path: path.clone(), source })?;
    Ok(path)
}
