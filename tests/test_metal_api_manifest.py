"""Every Metal/Foundation API that metal/source/device-metal.m uses is in metal/tools/metal-api-manifest.json,
and is available at the deployment target (macOS 14.0) or used under a guard.

Runs without an SDK: the manifest (names and versions, regenerated with
`GPTOSS_MACOS_SDK=<sdk> python3 metal/tools/check_macos_sdk.py --update-manifest`) is the project's data.
Why the SDK-version guards in device-metal.m exist is recorded there too: the macOS 15 SDK renamed
MTLPipelineOptionArgumentInfo to MTLPipelineOptionBindingInfo and replaced fastMathEnabled by mathMode
(deprecating the old names), and the 14 SDK (Xcode 15) has only the old ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "metal" / "tools"
DEVICE_METAL = ROOT / "metal" / "source" / "device-metal.m"

sys.path.insert(0, str(TOOLS))
import metal_api_manifest as api  # noqa: E402


@pytest.fixture(scope="module")
def manifest() -> dict:
    return api.load_manifest()


def uses_of(text: str, manifest: dict) -> dict[str, list[api.Use]]:
    found: dict[str, list[api.Use]] = {}
    for use in api.extract_uses(text, api.ManifestResolver(manifest)):
        found.setdefault(use.key, []).append(use)
    return found


def test_device_metal_uses_only_manifest_apis_available_or_guarded(manifest: dict) -> None:
    problems = api.check_file(DEVICE_METAL, manifest)
    assert not problems, "\n".join(problems) + (
        "\n\nAdd new APIs with: GPTOSS_MACOS_SDK=<sdk> python3 metal/tools/check_macos_sdk.py --update-manifest "
        "(APIs newer than that SDK: add them by hand with \"introduced\" and a \"note\"); docs/metal.md, "
        "'Checking the Mac build without a Mac'")


def test_manifest_is_the_projects_data(manifest: dict) -> None:
    text = (TOOLS / "metal-api-manifest.json").read_text()
    assert "Copyright" not in text and "@interface" not in text and "API_AVAILABLE(" not in text
    assert manifest["deployment_target"] == "14.0"
    for key, entry in manifest["entries"].items():
        assert entry.get("kind") in {"class", "protocol", "property", "class property", "method", "enum constant", "function",
                                     "macro", "type", "struct", "field"}, key
        for version in ("introduced", "deprecated"):
            if version in entry:
                assert api.parse_version(entry[version]) is not None, (key, entry)


def test_the_extractor_sees_every_kind_of_use(manifest: dict) -> None:
    found = uses_of(DEVICE_METAL.read_text(), manifest)
    for key in ("MTLCreateSystemDefaultDevice",                                # function
                "MTLDevice", "MTLCompileOptions",                              # protocol, class
                "-[MTLDevice newBufferWithBytesNoCopy:length:options:deallocator:]",   # multi-part selector
                "-[MTLCommandEncoder endEncoding]",                            # declared on a parent protocol
                "+[NSNull null]", "+[NSObject new]",                           # class methods (inherited)
                "MTLDevice.recommendedMaxWorkingSetSize",                      # property on a property (state.device)
                "NSString.UTF8String",                                         # chained: device.name.UTF8String
                "MTLSize.width",                                               # struct field of a property
                "MTLBinding.index", "MTLResourceStorageModeShared",            # for-in variable, enum constant
                "DISPATCH_DATA_DESTRUCTOR_DEFAULT", "dispatch_data_create"):   # macro, dispatch
        assert key in found, key
    assert all(not key.startswith("?[") for key in found), [k for k in found if k.startswith("?[")]


def test_guards_are_recognized(manifest: dict) -> None:
    found = uses_of(DEVICE_METAL.read_text(), manifest)
    # Introduced in macOS 15: only under the SDK-version #if (and @available for the runtime choice).
    for key in ("MTLPipelineOptionBindingInfo", "MTLMathModeSafe", "MTLCompileOptions.mathMode"):
        assert key in found, key
        assert all(use.guard is not None and use.guard >= (15, 0) for use in found[key]), key
        assert manifest["entries"][key]["introduced"] == "15.0"
    # Deprecated in macOS 15: only as the fallback for the 14 SDK / macOS 14.
    for key in ("MTLPipelineOptionArgumentInfo", "MTLCompileOptions.fastMathEnabled"):
        assert manifest["entries"][key]["deprecated"] == "15.0", key
        assert all(use.fallback is not None and use.fallback <= (15, 0) for use in found[key]), key


# ---- The checker on synthetic Objective-C ----

SNIPPET_HEAD = """
#import <Metal/Metal.h>
static void f(id<MTLDevice> device, MTLCompileOptions* options) {
"""


def check_snippet(body: str, manifest: dict) -> list[str]:
    return api.check_text(SNIPPET_HEAD + body + "\n}\n", manifest, "snippet.m")


def test_known_api_passes(manifest: dict) -> None:
    assert check_snippet("id<MTLCommandQueue> queue = [device newCommandQueue]; (void) device.name.UTF8String;",
                         manifest) == []


def test_unknown_selector_fails(manifest: dict) -> None:
    problems = check_snippet("id<MTLBuffer> b = [device newBufferWithMagic:16 options:MTLResourceStorageModeShared];",
                             manifest)
    assert len(problems) == 1 and "newBufferWithMagic:options:" in problems[0] and "not in" in problems[0], problems


def test_unknown_identifier_and_property_fail(manifest: dict) -> None:
    problems = check_snippet("MTLFancyThing thing = MTLFancyThingMake(); (void) device.teraflops;", manifest)
    text = "\n".join(problems)
    assert "MTLFancyThing" in text and "MTLFancyThingMake" in text and "MTLDevice.teraflops" in text, problems


def test_unguarded_newer_api_fails(manifest: dict) -> None:
    problems = check_snippet("options.mathMode = MTLMathModeSafe;", manifest)
    assert len(problems) == 2 and all("macOS 15.0" in p and "@available" in p for p in problems), problems


def test_api_guarded_by_available_passes(manifest: dict) -> None:
    body = """
    if (@available(macOS 15.0, *)) {
        options.mathMode = MTLMathModeSafe;
    } else {
        options.fastMathEnabled = NO;
    }"""
    assert check_snippet(body, manifest) == []


def test_api_guarded_by_an_older_available_fails(manifest: dict) -> None:
    body = """
    if (@available(macOS 14.0, *)) {
        options.mathMode = MTLMathModeSafe;
    }"""
    assert len(check_snippet(body, manifest)) == 2


def test_else_branch_of_available_is_not_guarded(manifest: dict) -> None:
    body = """
    if (@available(macOS 15.0, *)) {
        options.fastMathEnabled = NO;
    } else {
        options.mathMode = MTLMathModeSafe;
    }"""
    text = "\n".join(check_snippet(body, manifest))
    assert "mathMode was introduced" in text and "MTLMathModeSafe was introduced" in text   # unguarded in else
    assert "fastMathEnabled is deprecated" in text                                        # deprecated in the new branch


def test_api_under_sdk_version_guard_passes(manifest: dict) -> None:
    body = """
#if defined(MAC_OS_VERSION_15_0) && __MAC_OS_X_VERSION_MAX_ALLOWED >= MAC_OS_VERSION_15_0
    unsigned long o = MTLPipelineOptionBindingInfo;
#else
    unsigned long o = MTLPipelineOptionArgumentInfo;
#endif
    (void) o;"""
    assert check_snippet(body, manifest) == []


def test_sdk_guard_else_branch_is_not_guarded(manifest: dict) -> None:
    body = """
#if defined(MAC_OS_VERSION_15_0) && __MAC_OS_X_VERSION_MAX_ALLOWED >= MAC_OS_VERSION_15_0
    unsigned long o = MTLPipelineOptionArgumentInfo;
#else
    unsigned long o = MTLPipelineOptionBindingInfo;
#endif
    (void) o;"""
    text = "\n".join(check_snippet(body, manifest))
    assert "MTLPipelineOptionBindingInfo was introduced in macOS 15.0" in text
    assert "MTLPipelineOptionArgumentInfo is deprecated since macOS 15.0" in text


def test_deprecated_api_unguarded_fails(manifest: dict) -> None:
    problems = check_snippet("options.fastMathEnabled = NO;", manifest)
    assert len(problems) == 1 and "deprecated since macOS 15.0" in problems[0], problems


def test_comments_and_strings_are_not_uses(manifest: dict) -> None:
    body = '/* [device newBufferWithMagic:1] MTLFancyThing */ const char* s = "MTLFancyThing [x foo:bar]"; (void) s;'
    assert check_snippet(body, manifest) == []


def test_manifest_missing_an_entry_fails(manifest: dict) -> None:
    trimmed = json.loads(json.dumps(manifest))
    del trimmed["entries"]["-[MTLDevice newCommandQueue]"]
    problems = api.check_file(DEVICE_METAL, trimmed)
    assert any("-[MTLDevice newCommandQueue]" in p for p in problems), problems
