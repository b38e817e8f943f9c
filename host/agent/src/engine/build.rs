//! Turns a poller's spec into its running settings: the plugin (loaded on a
//! blocking thread, shared by every poller of the same module), checked
//! parameters, exclude patterns and the transfer backend.

use super::Local;
use super::poller::Settings;
use dispatch_protocol::PollerSpec;
use dispatch_runtime::builtin::{self, Source};
use dispatch_runtime::{Limits, Plugin, Runtime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(super) struct Builder {
    runtime: Arc<Runtime>,
    local: Local,
    /// Loaded plugins by source; cleared when the limits change.
    plugins: Mutex<HashMap<Source, Arc<Plugin>>>,
}

impl Builder {
    pub fn new(runtime: Runtime, local: Local) -> Self {
        Self {
            runtime: Arc::new(runtime),
            local,
            plugins: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_limits(&self, limits: Limits) {
        self.runtime.set_limits(limits);
        super::lock(&self.plugins).clear();
    }

    /// Forgets the plugins (and their compiled artifacts) that no poller in
    /// `in_use` (sha256s) runs.
    pub fn keep_only(&self, in_use: &std::collections::HashSet<String>) {
        super::lock(&self.plugins).retain(|_, p| in_use.contains(p.sha256()));
        self.runtime.keep_compiled(in_use);
    }

    /// The settings of `spec`; the error names the field at fault.
    pub async fn build(&self, spec: &PollerSpec) -> Result<Settings, String> {
        let plugin = self.plugin(spec).await?;
        let given: Vec<(String, String)> = spec
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.as_param()))
            .collect();
        let params = plugin
            .info()
            .resolve_params(&given)
            .map_err(|e| format!("field `params`: {e}"))?;
        let mut globs = globset::GlobSetBuilder::new();
        for (i, pattern) in spec.excludes.iter().enumerate() {
            let glob = globset::Glob::new(pattern)
                .map_err(|e| format!("field `excludes[{i}]`: `{pattern}`: {e}"))?;
            globs.add(glob);
        }
        let excludes = globs
            .build()
            .map_err(|e| format!("field `excludes`: {e}"))?;
        let uploads = self.local.state_dir.join("s3-uploads").join(&spec.id);
        let backend = dispatch_transfer::backend_for(&spec.target, &uploads)
            .map_err(|e| e.within("target").to_string())?;
        Ok(Settings {
            name: spec.name.clone(),
            plugin,
            params,
            backend,
            excludes: Arc::new(excludes),
            max_transfers: spec.max_transfers,
            stability: spec.stability,
            spec: spec.clone(),
        })
    }

    /// The file of the plugin `spec` runs: a module fetched by sha256, a
    /// built-in, or a path.
    fn source(&self, spec: &PollerSpec) -> Result<Source, String> {
        let Some(module) = &spec.module else {
            return builtin::resolve(&spec.plugin).map_err(|e| format!("field `plugin`: {e}"));
        };
        let dir = self.local.module_dir.as_ref().ok_or_else(|| {
            "field `module`: this agent has no module store (standalone agents take `plugin`)"
                .to_string()
        })?;
        let path = dir.join(format!("{}.wasm", module.sha256));
        if !path.exists() {
            return Err(format!(
                "plugin `{}` {} ({}) is not in the module store",
                spec.plugin, module.version, module.sha256
            ));
        }
        Ok(Source::File(path))
    }

    async fn plugin(&self, spec: &PollerSpec) -> Result<Arc<Plugin>, String> {
        let source = self.source(spec)?;
        if let Some(p) = super::lock(&self.plugins).get(&source) {
            return Ok(p.clone());
        }
        // Compiling takes a while: never on the threads that run transfers.
        let (runtime, from) = (self.runtime.clone(), source.clone());
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&from))
            .await
            .map_err(|e| format!("loading the plugin failed: {e}"))?
            .map_err(|e| format!("field `plugin`: {e}"))?;
        if let Some(m) = &spec.module
            && loaded.sha256() != m.sha256
        {
            return Err(format!(
                "the module store's copy of {} does not match its sha256",
                m.sha256
            ));
        }
        let loaded = Arc::new(loaded);
        super::lock(&self.plugins).insert(source, loaded.clone());
        Ok(loaded)
    }
}
