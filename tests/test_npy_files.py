"""The factor cache's own .npy header reader: numpy's answer for every array it writes, no ast, clear refusals."""

import ast
import io

import numpy as np
import pytest

from corpus_index.storage.npy_files import parse_header, read_header

ARRAYS = [
    np.zeros((8, 16, 16), np.float32),
    np.arange(5, dtype=np.int64),
    np.float16(3.5) * np.ones(()),  # 0-d: shape ()
    np.asfortranarray(np.ones((3, 4), np.float64)),
    np.zeros((0, 7), np.uint16),
    np.ones((2, 3), ">u4"),  # big-endian
]


def npy_bytes(array, version=None) -> bytes:
    handle = io.BytesIO()
    np.lib.format.write_array(handle, array, version=version)
    return handle.getvalue()


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_headers_read_as_numpy_reads_them(array, version):
    data = npy_bytes(array, version)
    handle = io.BytesIO(data)
    shape, fortran, dtype = read_header(handle)
    loaded = np.load(io.BytesIO(data))
    assert (shape, dtype) == (loaded.shape, loaded.dtype)
    assert fortran == (loaded.ndim > 1 and loaded.flags.f_contiguous and not loaded.flags.c_contiguous)
    assert handle.tell() == len(data) - array.nbytes  # left at the data


def test_no_ast_parse_is_used(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("ast.parse is not thread-safe before CPython 3.11.9 (gh-106905)")

    monkeypatch.setattr(ast, "parse", refuse)
    assert read_header(io.BytesIO(npy_bytes(np.zeros((2, 3), np.float32))))[0] == (2, 3)


def test_keys_in_any_order_and_spacing():
    assert parse_header("{'shape': (4,), 'fortran_order': False, 'descr': '<f4'}") == (
        (4,), False, np.dtype("<f4"))
    assert parse_header("{ 'descr':'|u1' ,'fortran_order':True,'shape':( 2 , 3 ) , }   \n") == (
        (2, 3), True, np.dtype("u1"))


@pytest.mark.parametrize("text", [
    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",  # structured dtype
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
    "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}",
    "{'descr': 'not a dtype', 'fortran_order': False, 'shape': (2,)}",
    "{'descr': '<f4', 'fortran_order': False}",
    "__import__('os')",
])
def test_anything_else_is_refused_with_a_value_error(text):
    with pytest.raises(ValueError, match="npy header"):
        parse_header(text)


def test_truncated_and_foreign_files_are_value_errors():
    data = npy_bytes(np.zeros((2, 3), np.float32))
    for broken in (data[:5], data[:9], data[:40], b"PK\x03\x04" + data):
        with pytest.raises(ValueError):
            read_header(io.BytesIO(broken))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_archives_load_as_numpy_loads_them(tmp_path, save):
    from corpus_index.storage.npy_files import load_npz

    arrays = {"ids": np.arange(4, dtype=np.int64), "vectors": np.random.default_rng(0).random((4, 3), np.float32),
              "hashes": np.array(["ab", "", "c", "d"]), "exact": np.array(True)}
    save(tmp_path / "a.npz", **arrays)
    loaded = load_npz(tmp_path / "a.npz")
    assert loaded.keys() == arrays.keys()
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)
    loaded["vectors"][0, 0] = 5.0  # writable, as np.load's arrays are
    assert load_npz(tmp_path / "a.npz", ["ids", "missing"]).keys() == {"ids"}


def test_damaged_npz_archives_raise_read_errors(tmp_path):
    from corpus_index.storage.integrity import READ_ERRORS
    from corpus_index.storage.npy_files import load_npz

    np.savez(tmp_path / "a.npz", ids=np.arange(1000))
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(READ_ERRORS):
        load_npz(tmp_path / "cut.npz")
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "none.npz")
