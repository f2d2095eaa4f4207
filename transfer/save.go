package transfer

import (
	"io"

	"github.com/strata-dev/strata/layerstore"
	"github.com/strata-dev/strata/layerstore/export"
)

// Save writes the stored images refs name (see Store.ResolveImage) as an
// archive in format (export.FormatDockerArchive, FormatOCIArchive or
// FormatOCILayout) to w, or for FormatOCILayout to the directory dir. As in
// docker save, an image named by a name is saved under that name only; by
// ID, under all its tags.
func Save(s *layerstore.Store, refs []string, format string, w io.Writer, dir string, opt export.Options) error {
	var imgs []*layerstore.ImageSource
	for _, ref := range refs {
		img, err := s.ResolveImage(ref)
		if err != nil {
			return err
		}
		src, err := s.ImageSource(&img)
		if err != nil {
			return err
		}
		if n, err := layerstore.NormalizeRef(ref); err == nil {
			for _, t := range img.RepoTags {
				if t == n {
					src.Names = []string{n}
				}
			}
		}
		imgs = append(imgs, src)
	}
	if opt.TmpDir == "" {
		opt.TmpDir = s.TmpDir()
	}
	return export.Write(format, w, dir, imgs, opt)
}
