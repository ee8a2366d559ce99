import shutil
import subprocess

import pytest

from tfrobust.tflite_tools import export_c, find_arena_size

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs the system C++ compiler")

MAIN = r"""
#include <cstdint>
#include <cstdio>
#include <cstring>
#include "model.h"

int main(int argc, char** argv) {
  if (g_model_len != EXPECTED_LEN) return 2;
  if (reinterpret_cast<std::uintptr_t>(g_model) % 16 != 0) return 3;
  if (std::memcmp(g_model + 4, "TFL3", 4) != 0) return 4;
  if (g_model_arena_size != EXPECTED_ARENA) return 5;
  std::FILE* f = std::fopen(argv[1], "wb");  // dump the array: the test compares it byte for byte
  std::fwrite(g_model, 1, g_model_len, f);
  std::fclose(f);
  return 0;
}
"""


def test_c_export_compiles_and_holds_the_exact_bytes(tmp_path, int8_batch1):
    arena = find_arena_size(int8_batch1).arena_size
    res = export_c(int8_batch1, tmp_path / "model.cc")
    assert res["header"] == tmp_path / "model.h" and res["source"] == tmp_path / "model.cc"
    assert res["length"] == len(int8_batch1) and res["arena_size"] == arena
    header = res["header"].read_text()
    assert "extern const unsigned char g_model[];" in header
    assert "alignas(16) const unsigned char g_model[]" in res["source"].read_text()
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", "model.cc", "-o", "model.o"],
                   cwd=tmp_path, check=True)
    (tmp_path / "main.cc").write_text(MAIN)
    subprocess.run(["g++", "-std=c++17", "-Wall", f"-DEXPECTED_LEN={len(int8_batch1)}",
                    f"-DEXPECTED_ARENA={arena}", "main.cc", "model.o", "-o", "check"],
                   cwd=tmp_path, check=True)
    run = subprocess.run([str(tmp_path / "check"), str(tmp_path / "dump.bin")])
    assert run.returncode == 0
    assert (tmp_path / "dump.bin").read_bytes() == int8_batch1


def test_explicit_arena_and_name(tmp_path, int8_batch1):
    res = export_c(int8_batch1, tmp_path / "net", name="kws_model", arena_size=4096)
    text = res["header"].read_text()
    assert "constexpr unsigned int kws_model_arena_size = 4096;" in text
    assert "extern const unsigned int kws_model_len;" in text


@pytest.mark.parametrize("kwargs, fragment", [
    ({"name": "1bad"}, "name"), ({"name": "a-b"}, "name"), ({"arena_size": -5}, "arena_size"),
    ({"arena_size": "big"}, "arena_size"),
])
def test_bad_arguments_raise(tmp_path, int8_batch1, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        export_c(int8_batch1, tmp_path / "m", **kwargs)
